"""Start the avatar ranks for a job and wait for them, from talkgen's side.

The launcher (talkgen.dist.agent, torchrun's elastic agent) runs as a child process under
the ranks' own Python (render.python, else talkgen's), so it shares their torch; talkgen
itself never imports torch.distributed here. Work crosses through the job directory: the
request, plan, speech and portrait go in; chunks, sidecars, continuity state, the ranks'
logs and the launcher's result come back. No shell string is ever built.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from talkgen.errors import TalkgenError
from talkgen.placement import rank_visible_devices

STOP_GRACE_S = 10.0  # how long the launcher gets to stop its ranks before it is killed


def launch(
    job_root: Path, nproc: int, request: dict, plan: dict, on_chunk: Callable[[dict], None] | None = None,
    skip: set[int] | None = None, python: str | None = None,
) -> None:
    """Run the rank workers over the job's plan under `python`; raise one TalkgenError line if any rank fails."""
    from talkgen import stopping
    from talkgen.dist.agent import result_path
    from talkgen.dist.interpreter import code_path, far_env
    from talkgen.dist.worker import request_path

    python = python or sys.executable
    job_root = job_root.resolve()
    dist_dir = job_root / "dist"
    shutil.rmtree(dist_dir, ignore_errors=True)
    (dist_dir / "logs").mkdir(parents=True)
    request_path(job_root).write_text(json.dumps(request) + "\n", encoding="utf-8")
    watcher = _ChunkWatcher(job_root, plan, request["render_key"], on_chunk, skip or set()) if on_chunk else None
    log = (dist_dir / "logs" / "agent.log").open("wb")
    try:
        # A session of its own: a Ctrl-C at the terminal reaches talkgen, which stops the
        # launcher in order (it stops the ranks); the launcher and ranks die with their parent.
        with stopping.deferred():  # a SIGTERM cannot land between the start and the tracking
            proc = stopping.track(subprocess.Popen(
                [python, "-m", "talkgen.dist.agent", str(job_root), str(nproc)],
                env=far_env(rank_visible_devices(request.get("gpus", ""))), cwd=code_path(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        try:
            code = proc.wait()
        except BaseException:  # Ctrl-C, or stopping.Terminated (SIGTERM, SIGHUP): stop the ranks in order
            stop(proc)
            raise
    finally:
        if watcher:
            watcher.stop()
        log.close()
    if code != 0:
        raise TalkgenError(_launch_failure(job_root, plan, request["render_key"], code, python, result_path(job_root)))


def stop(proc: subprocess.Popen) -> None:
    """Stop the launcher and, through it, every rank: SIGTERM, then SIGKILL after STOP_GRACE_S.
    The launcher passes the SIGTERM to the ranks, whose own stop handling aborts their
    encoders and removes their temporary files; a launcher killed outright takes the ranks
    with it (PR_SET_PDEATHSIG), without that cleanup. A second interrupt kills at once."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except BaseException:  # a second Ctrl-C or SIGTERM while waiting: no more waiting
        proc.kill()
        proc.wait()
        raise


def _launch_failure(job_root: Path, plan: dict, key: str, code: int, python: str, result: Path) -> str:
    try:
        found = json.loads(result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        found = {}
    if "failures" in found:
        return describe_failure({int(r): f["exitcode"] for r, f in found["failures"].items()}, job_root, plan, key)
    if code < 0 or "signal" in found:
        number = -code if code < 0 else found["signal"]
        name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        return f"the avatar ranks' launcher was stopped ({name}): finished chunks are kept; run again to resume"
    log = job_root / "dist" / "logs" / "agent.log"
    try:
        lines = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    said = lines[-1].strip()[:300] if lines else f"exit {code}"
    return f"the avatar ranks' launcher under {python} failed ({said}): see {log}"


def describe_failure(failures: dict[int, int | None], job_root: Path, plan: dict, key: str) -> str:
    """One line, from each failed rank's exit code: which rank failed first, in which chunk, and why."""
    from talkgen.dist.worker import error_path
    from talkgen.chunks import next_chunk

    chunk, _, _ = next_chunk(job_root, plan, key)
    where = f"chunk {chunk['index']}" if chunk else "the last chunk"
    reports = {}
    for rank in failures:
        try:
            reports[rank] = json.loads(error_path(job_root, rank).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    # A rank killed from outside (SIGKILL; the launcher itself stops the others with SIGTERM) is the cause.
    for rank, code in sorted(failures.items()):
        if code is not None and code < 0 and -code != signal.SIGTERM and rank not in reports:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            return f"rank {rank} was killed ({name}) while rendering {where}: finished chunks are kept; run again to resume"
    if reports:
        rank, rep = min(reports.items(), key=lambda item: item[1].get("time", 0))
        if rep.get("chunk") is not None:
            where = f"chunk {rep['chunk']}"
        return f"rank {rank} failed in {where}: {rep['error']} (finished chunks are kept; run again to resume)"
    rank, code = min(failures.items())
    return f"rank {rank} exited with code {code} in {where}: see {job_root / 'dist' / 'logs'}"


class _ChunkWatcher:
    """Polls the chunks' sidecars so the parent can show progress while the ranks work."""

    def __init__(self, job_root: Path, plan: dict, key: str, on_chunk: Callable[[dict], None], skip: set[int]):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(job_root, plan, key, on_chunk, skip), daemon=True)
        self._thread.start()

    def _loop(self, job_root: Path, plan: dict, key: str, on_chunk: Callable[[dict], None], skip: set[int]) -> None:
        from talkgen.chunks import finished_chunk, sidecar_path

        seen = set(skip)
        while not self._stop.wait(0.3):
            for chunk in plan["chunks"]:
                i = chunk["index"]
                if i not in seen and sidecar_path(job_root, i).is_file() and finished_chunk(job_root, chunk, key):
                    seen.add(i)
                    on_chunk(chunk)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
