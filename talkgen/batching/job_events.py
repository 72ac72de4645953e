"""A job's event log on disk, and the progress adapter a worker hands a job that has one.

    <job dir>/events.jsonl   one event a line: {"t": unix time, "event": name, ...its fields}
    <job dir>/cancel         present once the job was cancelled: its worker stops it at the next event

`talkgen serve` creates the log when it accepts a job (its first event is "status queued") and
appends the job's fate (running, done, failed, cancelled); the worker appends what only the
worker sees: the reply's text as it is written, each stage as it ends, each chunk as it is
finished, and each live segment as its playlist lists it. A job with no log (every `talkgen batch` job) gets the worker's own progress,
untouched. Lines are appended with one write each, so a reader that tails the file sees whole
lines, and a line a crash cut short is skipped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from talkgen.errors import TalkgenError
from talkgen.pipeline import Progress

EVENTS = "events.jsonl"
CANCEL = "cancel"
TERMINAL = ("done", "failed", "cancelled")


class Cancelled(TalkgenError):
    """The job was cancelled (DELETE /v1/jobs/{id}): its worker stops it at the next event."""


def log_path(job_dir: Path) -> Path:
    return job_dir / EVENTS


def append(job_dir: Path, event: str, **fields) -> None:
    line = json.dumps({"t": round(time.time(), 3), "event": event, **fields}, ensure_ascii=False) + "\n"
    fd = os.open(log_path(job_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read(job_dir: Path, offset: int = 0) -> tuple[list[dict], int]:
    """The whole events from byte `offset` on, and the offset after the last whole line."""
    try:
        with open(log_path(job_dir), "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
    events = []
    for line in data[:end].splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # cut short by a crash
    return events, offset + end


def cancel(job_dir: Path) -> None:
    (job_dir / CANCEL).touch()


def cancelled(job_dir: Path) -> bool:
    return (job_dir / CANCEL).exists()


def job_progress(inner: Progress, job_dir: Path | None) -> Progress:
    """What the worker's pipeline reports to for this job: `inner` alone, or, when the job has an
    event log, `inner` and the log (raising Cancelled if the job was cancelled before it started)."""
    if job_dir is None or not log_path(job_dir).is_file():
        return inner
    if cancelled(job_dir):
        raise Cancelled("cancelled before it started")
    return JobEvents(inner, job_dir)


class JobEvents(Progress):
    """Forwards every callback to the worker's own progress and logs the ones a client follows."""

    def __init__(self, inner: Progress, job_dir: Path):
        self.inner, self.dir = inner, job_dir
        logged, _ = read(job_dir)
        self.created = logged[0]["t"] if logged else time.time()
        self.chunks_logged = max((e["index"] + 1 for e in logged if e.get("event") == "chunk"), default=0)
        # Stages this run of the job already logged (its look-ahead's): not logged again as cache hits.
        run = logged[max((i for i, e in enumerate(logged) if e.get("event") == "status"), default=0):]
        self.stages_logged = {e["name"] for e in run if e.get("event") == "stage"}
        self.segments_logged = max((e["index"] + 1 for e in logged if e.get("event") == "segment"), default=0)
        self.since = time.perf_counter()  # the stage being run began when the last one ended

    def _check(self) -> None:
        if cancelled(self.dir):
            raise Cancelled("cancelled")

    def stage(self, name: str, total: float | None, unit: str) -> None:
        self._check()
        self.inner.stage(name, total, unit)

    def advance(self, n: float = 1, stage: str = "") -> None:
        self.inner.advance(n, stage)
        self._check()

    def done(self, name: str, cache: str) -> None:
        self.inner.done(name, cache)
        now = time.perf_counter()
        if name not in self.stages_logged:
            append(self.dir, "stage", name=name, cache=cache, wall_s=round(now - self.since, 3))
            self.stages_logged.add(name)
        self.since = now
        self._check()

    def note(self, message: str) -> None:
        self.inner.note(message)

    def turn(self, index: int, question: str) -> None:
        self.inner.turn(index, question)
        self._check()

    def text(self, chunk: str) -> None:
        self.inner.text(chunk)
        append(self.dir, "text", text=chunk)
        self._check()

    # A chunk or segment is logged once, also when a job run again (resumed) hands its finished
    # chunks on anew; the first one's time counts from when the job was accepted, queue included.
    def chunk(self, index: int, seconds: float) -> None:
        self.inner.chunk(index, seconds)
        if index >= self.chunks_logged:
            fields = {"first_chunk_s": round(time.time() - self.created, 3)} if index == 0 else {}
            append(self.dir, "chunk", index=index, **fields)
            self.chunks_logged = index + 1

    def segment(self, index: int, playlist: Path, seconds: float) -> None:
        self.inner.segment(index, playlist, seconds)
        if index >= self.segments_logged:
            fields = {"first_segment_s": round(time.time() - self.created, 3)} if index == 0 else {}
            append(self.dir, "segment", index=index, **fields)
            self.segments_logged = index + 1
