"""The rank worker: `python -m talkgen.dist.worker JOB_DIR`, started by talkgen.dist.agent, one per rank.

It runs under the ranks' own Python (render.python), so it imports only the standard
library, numpy, torch, the back end's packages and talkgen's far-side modules (the chunk
store and writer, media, speech, recipes, the engines), never the rest of talkgen.

Every rank loads the back end once for the whole job. Rank 0 reads the plan, skips the
chunks already on disk, and broadcasts each remaining chunk (with the continuity state
it starts from) to all ranks; all ranks render it together; the back end's output rank
streams the frames into the chunk encoder and broadcasts the continuity that the next
chunk starts from, which also closes the chunk on every rank. A rank that fails
writes one line naming itself and the chunk to dist/rank<N>.error.json for the launcher.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

CURRENT_CHUNK: int | None = None


def request_path(job_root: Path) -> Path:
    return job_root / "dist" / "request.json"


def error_path(job_root: Path, rank: int) -> Path:
    return job_root / "dist" / f"rank{rank}.error.json"


def timing_path(job_root: Path, rank: int) -> Path:
    return job_root / "dist" / f"rank{rank}.timing.json"


def run_rank(job_root: Path, rank: int, world_size: int, local_rank: int, started: float) -> None:
    global CURRENT_CHUNK
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from talkgen.chunk_writer import ChunkFinisher, render_one
    from talkgen.chunks import next_chunk
    from talkgen.engines.avatar import load_avatar
    from talkgen.portrait import from_launcher
    from talkgen.recipe import recipe_from_dict
    from talkgen.speech import SpeechTrack

    times = {"started": started, "imported": time.time(), "python": sys.executable, "torch": torch.__version__}
    req = json.loads(request_path(job_root).read_text(encoding="utf-8"))
    recipe = recipe_from_dict(req["recipe"])
    c = recipe.render
    device = "cpu"
    if c.device == "cuda":
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    dist.init_process_group(req["backend"], timeout=timedelta(seconds=c.collective_timeout_s))
    finisher = None
    try:
        times["joined"] = time.time()
        portrait = from_launcher(req["portrait"])
        engine = load_avatar(c, portrait, rank=rank, world_size=world_size, device=device, state_dir=job_root / "chunks")
        track = SpeechTrack.load(job_root / "speech.wav", job_root / "alignment.json")
        plan = json.loads((job_root / "plan.json").read_text(encoding="utf-8"))
        key = req["render_key"]
        times["ready"] = time.time()
        if rank == engine.output_rank:
            finisher = ChunkFinisher(job_root, key)
        chunk, continuity, pos = next_chunk(job_root, plan, key) if rank == 0 else (None, None, 0)
        while True:
            msg: list = [None if chunk is None else {"chunk": chunk, "continuity": continuity}]
            dist.broadcast_object_list(msg, src=0)
            if msg[0] is None:
                break
            CURRENT_CHUNK = msg[0]["chunk"]["index"]
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
        times["done"] = time.time()
        # What of talkgen this rank needed: the far side's whole import set, checked by the tests.
        times["talkgen_modules"] = sorted(m for m in sys.modules if m == "talkgen" or m.startswith("talkgen."))
        timing_path(job_root, rank).write_text(json.dumps(times) + "\n", encoding="utf-8")
    finally:
        if finisher:
            finisher.abort()
        dist.destroy_process_group()


def main() -> None:
    started = time.time()
    from talkgen.dist.agent import die_with_parent

    if "TORCHELASTIC_RUN_ID" in os.environ:  # started by the launcher (not called in a test's own process)
        die_with_parent(signal.SIGKILL)  # a launcher killed outright leaves no rank behind
    job_root = Path(sys.argv[1])
    rank = int(os.environ["RANK"])
    from talkgen import stopping

    try:
        with stopping.handling():  # the launcher's SIGTERM aborts this rank's encoder and removes its temporaries
            run_rank(job_root, rank, int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")), started)
    except stopping.Terminated as exc:  # stopped, not failed: no error report to blame this rank
        _sweep()
        raise SystemExit(exc.exit_code) from None
    except BaseException as exc:  # the launcher turns this into the user's one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error_path(job_root, rank).write_text(json.dumps({
            "rank": rank, "chunk": getattr(exc, "chunk", CURRENT_CHUNK), "error": f"{type(exc).__name__}: {message}",
            "time": time.time(),
        }) + "\n", encoding="utf-8")
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
