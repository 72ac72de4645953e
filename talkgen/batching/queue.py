"""The batch's state on disk, in the output folder, so that a killed batch picks up where it was.

    <out>/.talkgen-batch/lock         held by the batch writing this folder (its pid inside)
    <out>/.talkgen-batch/queue.json   every job: its digest, status, worker, error, result (and the
                                      worker it is promised to next, whose look-ahead begins it)
    <out>/.talkgen-batch/jobs/<name>/ each job's job directory (stages, chunks): a resume starts here
    <out>/.talkgen-batch/workers/<id>/ each worker's status (for the live view), log and rank group

queue.json is written only by the batch's coordinator, whole and renamed into place after
every change, so a SIGKILL leaves the last complete version. A job found `done` with the
same digest and its video still there is skipped; any other job is run, and its job
directory's finished stages and chunks are reused by the pipeline's cache keys.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from talkgen.errors import UsageError
from talkgen.job import sha256_file, write_json_atomic

STATE = ".talkgen-batch"


def state_dir(out: Path) -> Path:
    return out / STATE


def job_dir(out: Path, name: str) -> Path:
    return state_dir(out) / "jobs" / name


def worker_dir(out: Path, worker_id: str) -> Path:
    return state_dir(out) / "workers" / worker_id


def video_path(out: Path, name: str) -> Path:
    return out / f"{name}.mp4"


class BatchLock:
    """One batch per output folder: the second one refuses in one line."""

    def __init__(self, out: Path):
        self.path = state_dir(out) / "lock"
        self._fd: int | None = None

    def __enter__(self) -> "BatchLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UsageError(f"{self.path.parent.parent} is being written by another talkgen batch (pid {holder}): "
                             "wait for it to finish, or choose another -o") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Queue:
    """The jobs' states; the coordinator's alone to write."""

    def __init__(self, out: Path):
        self.out = out
        self.path = state_dir(out) / "queue.json"
        self.jobs: dict[str, dict] = {}
        try:
            self.jobs = json.loads(self.path.read_text(encoding="utf-8")).get("jobs", {})
        except (OSError, ValueError, AttributeError):
            self.jobs = {}  # no queue yet, or one we cannot read: every job runs (their job folders still resume)

    def finished(self, name: str, digest: str) -> dict | None:
        """The stored result of a job that is done with this digest and whose video is still as it was written."""
        entry = self.jobs.get(name)
        if not entry or entry.get("status") != "done" or entry.get("digest") != digest:
            return None
        result = entry.get("result") or {}
        video = video_path(self.out, name)
        if not video.is_file() or not result.get("video_sha256") or sha256_file(video) != result["video_sha256"]:
            return None
        return result

    def set(self, name: str, digest: str, status: str, **fields) -> None:
        entry = self.jobs.setdefault(name, {})
        entry.update(digest=digest, status=status, updated=time.time(), **fields)
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, {"version": 1, "jobs": self.jobs})
