"""Start the avatar ranks, hand them jobs and wait for them, from talkgen's side.

The launcher (talkgen.ranks.agent, torchrun's elastic agent) runs as a child process under
the ranks' own Python (render.python, else talkgen's), so it shares their torch; talkgen
itself never imports torch.distributed here. Work crosses through the job directory: the
request, plan, speech and portrait go in; chunks, sidecars, continuity state, the ranks'
logs and the launcher's result come back. No shell string is ever built.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from talkgen.chunks import Chunk, Plan
from talkgen.errors import TalkgenError
from talkgen.placement import rank_visible_devices

STOP_GRACE_S = 10.0  # how long the launcher gets to stop its ranks before it is killed


@dataclass(frozen=True)
class GroupSettings:
    """What a rank group is started with; a job that needs other settings needs another group."""

    nproc: int
    python: str
    gpus: str
    backend: str
    collective_timeout_s: float


class RankGroup:
    """The avatar ranks of one worker, launched once and kept up across jobs.

    `group_root/ranks` holds the launcher's logs and result and the job inbox and outbox; each
    job renders into its own directory. A rank that fails takes the group down: that job
    fails with one line, and the next job needs a new group (RankGroup.alive is False).
    """

    def __init__(self, group_root: Path, settings: GroupSettings, on_load: Callable[[], None] | None = None):
        """on_load: called once for each time the ranks load the back end (a job with other
        settings than the last needs it loaded again), so that what they load is counted."""
        from talkgen import stopping
        from talkgen.ranks.interpreter import code_path, far_env
        from talkgen.ranks.worker import group_path, inbox, outbox

        self.root, self.settings = group_root.resolve(), settings
        self.jobs, self.loads, self._on_load = 0, 0, on_load or (lambda: None)
        ranks_dir = self.root / "ranks"
        for sub in ("logs", "inbox", "outbox"):
            shutil.rmtree(ranks_dir / sub, ignore_errors=True)
        (ranks_dir / "agent.json").unlink(missing_ok=True)
        for sub in ("logs", "inbox", "outbox"):
            (ranks_dir / sub).mkdir(parents=True)
        self._inbox, self._outbox = inbox(self.root), outbox(self.root)
        group_path(self.root).write_text(json.dumps({"backend": settings.backend,
                                                     "collective_timeout_s": settings.collective_timeout_s}) + "\n", encoding="utf-8")
        self.started = time.time()
        self._log = (ranks_dir / "logs" / "agent.log").open("wb")
        # A session of its own: a Ctrl-C at the terminal reaches talkgen, which stops the
        # launcher in order (it stops the ranks); the launcher and ranks die with their parent.
        with stopping.deferred():  # a SIGTERM cannot land between the start and the tracking
            self.proc = stopping.track(subprocess.Popen(
                [settings.python, "-m", "talkgen.ranks.agent", str(self.root), str(settings.nproc)],
                env=far_env(rank_visible_devices(settings.gpus)), cwd=code_path(),
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True))

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def render(self, job_root: Path, request: dict, plan: Plan, on_chunk: Callable[[Chunk], None] | None = None,
               skip: set[int] | None = None, check: Callable[[], None] | None = None) -> float:
        """Render one job's plan on the ranks; return when the job was handed over (the start of
        its timings). Raises one TalkgenError line if a rank fails (the group is then down).
        `check` is called while waiting, and raises to stop (a job whose other stages stopped)."""
        from talkgen.ranks.worker import error_path, request_path, timing_path

        job_root = job_root.resolve()
        (job_root / "ranks").mkdir(parents=True, exist_ok=True)
        for rank in range(self.settings.nproc):
            error_path(job_root, rank).unlink(missing_ok=True)
            timing_path(job_root, rank).unlink(missing_ok=True)
        request_path(job_root).write_text(json.dumps(request) + "\n", encoding="utf-8")  # what the job was, for a person reading it
        handed = self.started if self.jobs == 0 else time.time()
        seq = self.jobs
        self.jobs += 1
        _write_json(self._inbox / f"{seq:06d}.json", {"job_root": str(job_root), "request": request})
        watcher = _ChunkWatcher(job_root, plan, request["render_key"], on_chunk, skip or set()) if on_chunk else None
        done = self._outbox / f"{seq:06d}.json"
        try:
            while not done.exists():
                if self.proc.poll() is not None:
                    break
                if check is not None:
                    check()
                time.sleep(0.02)
        except BaseException:  # Ctrl-C, or stopping.Terminated (SIGTERM, SIGHUP): stop the ranks in order
            self.stop()
            raise
        finally:
            if watcher:
                watcher.stop()
        if not done.exists():
            self._close_log()
            from talkgen.ranks.agent import result_path

            raise TalkgenError(_launch_failure(job_root, self.root, plan, request["render_key"], self.proc.returncode,
                                               self.settings.python, result_path(self.root)))
        loads = json.loads(done.read_text(encoding="utf-8")).get("loads", self.loads)  # the ranks' count, from their first job
        for _ in range(loads - self.loads):
            self._on_load()
        self.loads = max(self.loads, loads)
        return handed

    def close(self, timeout_s: float = STOP_GRACE_S) -> None:
        """Let the ranks finish and leave; stop them if they do not within timeout_s."""
        if self.alive:
            (self._inbox / "close").touch()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                stop(self.proc)
        self._close_log()

    def stop(self) -> None:
        stop(self.proc)
        self._close_log()

    def _close_log(self) -> None:
        if not self._log.closed:
            self._log.close()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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


def _launch_failure(job_root: Path, group_root: Path, plan: Plan, key: str, code: int, python: str, result: Path) -> str:
    try:
        found = json.loads(result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        found = {}
    if "failures" in found:
        return describe_failure({int(r): f["exitcode"] for r, f in found["failures"].items()}, job_root, plan, key, group_root)
    if code < 0 or "signal" in found:
        number = -code if code < 0 else found["signal"]
        name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        return f"the avatar ranks' launcher was stopped ({name}): finished chunks are kept; run again to resume"
    log = group_root / "ranks" / "logs" / "agent.log"
    try:
        lines = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    said = lines[-1].strip()[:300] if lines else f"exit {code}"
    return f"the avatar ranks' launcher under {python} failed ({said}): see {log}"


def describe_failure(failures: dict[int, int | None], job_root: Path, plan: Plan, key: str, group_root: Path | None = None) -> str:
    """One line, from each failed rank's exit code: which rank failed first, in which chunk, and why.
    A rank that failed before it had a job wrote its report in the group's folder."""
    from talkgen.chunks import next_chunk
    from talkgen.ranks.worker import error_path

    chunk, _, _ = next_chunk(job_root, plan, key)
    where = f"chunk {chunk.index}" if chunk else "the last chunk"
    group_root = group_root or job_root
    reports = {}
    for rank in failures:
        for root in (job_root, group_root):
            try:
                reports[rank] = json.loads(error_path(root, rank).read_text(encoding="utf-8"))
                break
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
    return f"rank {rank} exited with code {code} in {where}: see {group_root / 'ranks' / 'logs'}"


class _ChunkWatcher:
    """Polls the chunks' sidecars so the parent can show progress while the ranks work."""

    def __init__(self, job_root: Path, plan: Plan, key: str, on_chunk: Callable[[Chunk], None], skip: set[int]):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(job_root, plan, key, on_chunk, skip), daemon=True)
        self._thread.start()

    def _loop(self, job_root: Path, plan: Plan, key: str, on_chunk: Callable[[Chunk], None], skip: set[int]) -> None:
        from talkgen.chunks import finished_chunk

        seen = set(skip)
        while not self._stop.wait(0.3):
            for chunk in plan.chunks:
                if chunk.index not in seen and finished_chunk(job_root, chunk, key):
                    seen.add(chunk.index)
                    on_chunk(chunk)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
