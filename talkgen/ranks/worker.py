"""The rank worker: `python -m talkgen.ranks.worker GROUP_DIR`, started by talkgen.ranks.agent, one per rank.

It runs under the ranks' own Python (render.python), so it imports only the standard
library, numpy, torch, the back end's packages and talkgen's far-side modules (the chunk
store and writer, media, speech, recipes, the engines), never the rest of talkgen.

The ranks are a group that serves job after job: talkgen's side (talkgen.ranks.launch)
writes each job's request to GROUP_DIR/ranks/inbox/, rank 0 picks it up and broadcasts it,
and every rank renders it into that job's own directory through the chunk store, so a
multi-rank back end is launched and loaded once per worker, not once per video. While no
job waits, rank 0 broadcasts a heartbeat every second, so that idle ranks never hit the
collective timeout. A `close` file in the inbox ends the group.

Per job: rank 0 reads the plan, skips the chunks already on disk, and broadcasts each
remaining chunk (with the continuity state it starts from) to all ranks; all ranks render
it together; the back end's output rank streams the frames into the chunk encoder and
broadcasts the continuity that the next chunk starts from, which also closes the chunk on
every rank. Rank 0 then writes GROUP_DIR/ranks/outbox/<seq>.json. A rank that fails writes
one line naming itself and the chunk to <job>/ranks/rank<N>.error.json and exits, which
takes the whole group down (the launcher stops the other ranks): talkgen's side reports
the job's failure and starts a new group for the next job.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

CURRENT_CHUNK: int | None = None
CURRENT_JOB: Path | None = None
HEARTBEAT_S = 1.0  # an idle group's broadcast interval: far inside any collective timeout
POLL_S = 0.02


def group_path(group_root: Path) -> Path:
    """The group's own settings (backend, collective timeout), written before the launch."""
    return group_root / "ranks" / "group.json"


def inbox(group_root: Path) -> Path:
    return group_root / "ranks" / "inbox"


def outbox(group_root: Path) -> Path:
    return group_root / "ranks" / "outbox"


def request_path(job_root: Path) -> Path:
    return job_root / "ranks" / "request.json"


def error_path(job_root: Path, rank: int) -> Path:
    return job_root / "ranks" / f"rank{rank}.error.json"


def timing_path(job_root: Path, rank: int) -> Path:
    return job_root / "ranks" / f"rank{rank}.timing.json"


def _write_json(path: Path, data: dict) -> None:
    """Whole or not at all: the other side polls for these files."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _next_message(group_root: Path, done: set[int]) -> dict:
    """Rank 0: the next job in the inbox, the close order, or a heartbeat after HEARTBEAT_S."""
    box = inbox(group_root)
    deadline = time.monotonic() + HEARTBEAT_S
    while True:
        if (box / "close").exists():
            return {"close": True}
        waiting = sorted(int(p.stem) for p in box.glob("[0-9]*.json") if int(p.stem) not in done)
        if waiting:
            seq = waiting[0]
            job = json.loads((box / f"{seq:06d}.json").read_text(encoding="utf-8"))
            return {"job": job, "seq": seq, "received": time.time()}
        if time.monotonic() >= deadline:
            return {"idle": True}
        time.sleep(POLL_S)


def _engine_key(recipe) -> str:
    """What the loaded back end depends on: the settings it declares it reads at load. The
    portrait is a job's input, handed to the loaded back end (use_portrait), and so is the chunk
    folder where large continuity state goes: neither reloads the model."""
    from talkgen.engines.registry import reload_settings

    c = recipe.render
    return json.dumps([c.engine, reload_settings("avatar", c)], sort_keys=True, default=str)


def serve(group_root: Path, rank: int, world_size: int, local_rank: int, started: float) -> None:
    global CURRENT_CHUNK, CURRENT_JOB
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from talkgen.chunks import chunk_dir
    from talkgen.engines.avatar import load_avatar
    from talkgen.placement import release
    from talkgen.portrait import from_launcher
    from talkgen.recipe import recipe_from_dict

    imported = time.time()
    settings = json.loads(group_path(group_root).read_text(encoding="utf-8"))
    device = "cpu"
    if settings["backend"] == "nccl":
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    dist.init_process_group(settings["backend"], timeout=timedelta(seconds=settings["collective_timeout_s"]))
    joined = time.time()
    engine, engine_key, loads, jobs = None, None, 0, 0
    done: set[int] = set()
    try:
        while True:
            msg = [_next_message(group_root, done) if rank == 0 else None]
            dist.broadcast_object_list(msg, src=0)
            m = msg[0]
            if m.get("close"):
                break
            if m.get("idle"):
                continue
            seq, job = m["seq"], m["job"]
            done.add(seq)
            CURRENT_JOB = Path(job["job_root"])
            first = jobs == 0
            times = {"started": started if first else m["received"], "imported": imported if first else m["received"],
                     "joined": joined if first else m["received"], "python": sys.executable, "torch": torch.__version__,
                     "seq": seq}
            req = job["request"]
            recipe = recipe_from_dict(req["recipe"])
            key, portrait = _engine_key(recipe), from_launcher(req["portrait"])
            if key != engine_key:
                if engine is not None:
                    engine = None  # the old one goes before the new one loads: they may not both fit
                    release()
                engine = load_avatar(recipe.render, portrait, rank=rank, world_size=world_size, device=device,
                                     state_dir=chunk_dir(CURRENT_JOB))
                engine_key, loads = key, loads + 1
            else:
                engine.use_portrait(portrait)
                if hasattr(engine, "state_dir"):
                    engine.state_dir = chunk_dir(CURRENT_JOB)
            render_job(CURRENT_JOB, rank, engine, recipe.render, req["render_key"], times)
            jobs += 1
            times.update(done=time.time(), loads=loads, jobs=jobs)
            # What of talkgen this rank needed: the far side's whole import set, checked by the tests.
            times["talkgen_modules"] = sorted(n for n in sys.modules if n == "talkgen" or n.startswith("talkgen."))
            _write_json(timing_path(CURRENT_JOB, rank), times)
            dist.barrier()  # every rank's timing is on disk before the job is reported done
            if rank == 0:
                _write_json(outbox(group_root) / f"{seq:06d}.json", {"ok": True, "time": time.time(), "loads": loads})
            CURRENT_JOB = None
    finally:
        dist.destroy_process_group()


def render_job(job_root: Path, rank: int, engine, c, key: str, times: dict) -> None:
    """One job's remaining chunks, rendered by every rank together."""
    global CURRENT_CHUNK
    import torch.distributed as dist

    from talkgen.chunk_writer import ChunkFinisher, render_one
    from talkgen.chunks import Plan, next_chunk
    from talkgen.speech import SpeechTrack

    track = SpeechTrack.load(job_root / "speech.wav", job_root / "alignment.json")
    plan = Plan.load(job_root / "plan.json")
    times["ready"] = time.time()
    finisher = ChunkFinisher(job_root, key) if rank == engine.output_rank else None
    try:
        chunk, continuity, pos = next_chunk(job_root, plan, key) if rank == 0 else (None, None, 0)
        while True:
            msg: list = [None if chunk is None else {"chunk": chunk, "continuity": continuity}]
            dist.broadcast_object_list(msg, src=0)
            if msg[0] is None:
                break
            CURRENT_CHUNK = msg[0]["chunk"].index
            after = render_one(job_root, msg[0]["chunk"], key, engine, track, msg[0]["continuity"], c.crf, c.preset, finisher)
            # The output rank made the frames, so it holds the continuity; rank 0 hands it to the next chunk
            # from memory while the finisher is still writing this chunk's file and sidecar.
            handed = [after]
            dist.broadcast_object_list(handed, src=engine.output_rank)
            if rank == 0:
                chunk, continuity, pos = next_chunk(job_root, plan, key, pos + 1, handed[0])
            CURRENT_CHUNK = None
        if finisher:
            finisher.join()
            times["wait_s"] = finisher.wait_s
    finally:
        if finisher:
            finisher.abort()


def main() -> None:
    started = time.time()
    from talkgen.ranks.agent import die_with_parent

    if "TORCHELASTIC_RUN_ID" in os.environ:  # started by the launcher (not called in a test's own process)
        die_with_parent(signal.SIGKILL)  # a launcher killed outright leaves no rank behind
    group_root = Path(sys.argv[1])
    rank = int(os.environ["RANK"])
    from talkgen import stopping

    try:
        with stopping.handling():  # the launcher's SIGTERM aborts this rank's encoder and removes its temporaries
            serve(group_root, rank, int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")), started)
    except stopping.Terminated as exc:  # stopped, not failed: no error report to blame this rank
        _sweep()
        raise SystemExit(exc.exit_code) from None
    except BaseException as exc:  # the launcher turns this into the user's one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = CURRENT_JOB or group_root
        (where / "ranks").mkdir(parents=True, exist_ok=True)
        _write_json(error_path(where, rank), {
            "rank": rank, "chunk": getattr(exc, "chunk", CURRENT_CHUNK), "error": f"{type(exc).__name__}: {message}",
            "time": time.time(),
        })
        _sweep()
        raise SystemExit(1) from None


def _sweep() -> None:
    """What the cleanup did not reach, as the CLI does after a stop: a signal can land inside a
    chunk encoder's start, after its temporary file exists and before anything can abort it."""
    from talkgen import stopping

    stopping.kill_children()
    stopping.remove_temporaries()


if __name__ == "__main__":
    main()
