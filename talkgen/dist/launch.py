"""Launch the avatar ranks with PyTorch's own launcher (torch.distributed.run), in process.

As torchtune's `tune run` does: torchrun's argument parser builds the launch, and
`torch.distributed.run.run` starts the elastic agent here, which starts one process per
rank and stops them all when one fails. No shell string is ever built.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Callable

from talkgen.errors import TalkgenError
from talkgen.placement import rank_visible_devices

LOGGERS = ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher")


def launch(
    job_root: Path, nproc: int, request: dict, plan: dict, on_chunk: Callable[[dict], None] | None = None, skip: set[int] | None = None
) -> None:
    """Run the rank workers over the job's plan; raise one TalkgenError line if any rank fails."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from talkgen.dist.worker import request_path

    dist_dir = job_root / "dist"
    shutil.rmtree(dist_dir, ignore_errors=True)
    (dist_dir / "logs").mkdir(parents=True)
    request_path(job_root).write_text(json.dumps(request) + "\n", encoding="utf-8")
    args = get_args_parser().parse_args([
        "--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0", "--monitor-interval=0.2",
        f"--log-dir={dist_dir / 'logs'}", "--redirects=3",  # ranks' own output goes to the logs, not the terminal
        "-m", "talkgen.dist.worker", str(job_root.resolve()),
    ])
    # One thread per rank on a CPU launch unless the user says otherwise (torchrun would warn and do the same).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    devices = rank_visible_devices(request.get("gpus", ""))
    outer = os.environ.get("CUDA_VISIBLE_DEVICES")
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices  # the ranks inherit it; local rank i takes the i-th
    quiet = _silence(LOGGERS)
    watcher = _ChunkWatcher(job_root, plan, request["render_key"], on_chunk, skip or set()) if on_chunk else None
    try:
        run(args)
    except ChildFailedError as exc:
        raise TalkgenError(describe_failure(exc.failures, job_root, plan, request["render_key"])) from None
    except SignalException:
        # Ctrl-C (or a SIGTERM) reached the launcher, which has already stopped the ranks.
        raise KeyboardInterrupt from None
    finally:
        if watcher:
            watcher.stop()
        quiet()
        if devices is not None:  # talkgen's own numbering stays as the user set it
            if outer is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = outer


def describe_failure(failures: dict, job_root: Path, plan: dict, key: str) -> str:
    """One line: which rank failed first, in which chunk, and why."""
    from talkgen.dist.worker import error_path
    from talkgen.stages.render import next_chunk

    chunk, _, _ = next_chunk(job_root, plan, key)
    where = f"chunk {chunk['index']}" if chunk else "the last chunk"
    reports = {}
    for rank in failures:
        try:
            reports[rank] = json.loads(error_path(job_root, rank).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    # A rank killed from outside (SIGKILL; the launcher itself stops the others with SIGTERM) is the cause.
    for rank, f in sorted(failures.items()):
        if f.exitcode is not None and f.exitcode < 0 and -f.exitcode != signal.SIGTERM and rank not in reports:
            name = signal.Signals(-f.exitcode).name if -f.exitcode in signal.valid_signals() else f"signal {-f.exitcode}"
            return f"rank {rank} was killed ({name}) while rendering {where}: finished chunks are kept; run again to resume"
    if reports:
        rank, rep = min(reports.items(), key=lambda item: item[1].get("time", 0))
        if rep.get("chunk") is not None:
            where = f"chunk {rep['chunk']}"
        return f"rank {rank} failed in {where}: {rep['error']} (finished chunks are kept; run again to resume)"
    rank, f = min(failures.items())
    return f"rank {rank} exited with code {f.exitcode} in {where}: see {job_root / 'dist' / 'logs'}"


def _silence(names: tuple[str, ...]) -> Callable[[], None]:
    """The elastic agent logs multi-line reports to stderr; talkgen prints its own one line."""
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.CRITICAL + 1)

    def restore() -> None:
        for logger, level in saved:
            logger.setLevel(level)

    return restore


class _ChunkWatcher:
    """Polls the chunks' sidecars so the parent can show progress while the ranks work."""

    def __init__(self, job_root: Path, plan: dict, key: str, on_chunk: Callable[[dict], None], skip: set[int]):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(job_root, plan, key, on_chunk, skip), daemon=True)
        self._thread.start()

    def _loop(self, job_root: Path, plan: dict, key: str, on_chunk: Callable[[dict], None], skip: set[int]) -> None:
        from talkgen.stages.render import finished_chunk, sidecar_path

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
