"""One background thread that turns replies into clips, in the order they were asked.

The person types the next question while the last clip renders. stop_all() stops the
clip being rendered and drops the waiting ones: each job carries the epoch it was queued
in, and the render checks between frames whether the epoch has moved on.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from talkgen import feeds
from talkgen.errors import TalkgenError


class Stopped(Exception):
    """Raised inside a render when the person stopped it."""


@dataclass
class ClipJob:
    turn: int
    text: str | None  # the reply; None while it is written, its pieces then come through `pieces`
    asked_at: float  # time.monotonic() when the question was entered
    epoch: int = 0
    origin: str = ""  # the key of the reply's making (stages/reply.py origin), which the clip's speech is keyed by
    pieces: feeds.Feed | None = None
    dropped: bool = False  # its reply was stopped: the clip goes without a word


@dataclass
class Callbacks:
    render: Callable[[ClipJob, Callable[[], None]], dict]  # makes the clip; calls its second argument often
    ready: Callable[[ClipJob, dict, float], None]  # the clip record and the render's wall time
    stopped: Callable[[ClipJob], None]
    failed: Callable[[ClipJob, str], None]


class Renderer:
    def __init__(self, callbacks: Callbacks, warm_up: Callable[[], None] | None = None):
        self._cb = callbacks
        # The queue counts its unfinished jobs itself, so a Ctrl-C between two lines of
        # submit() cannot leave a count that never reaches zero.
        self._jobs: queue.Queue = queue.Queue()
        self._epoch = 0
        self._thread = threading.Thread(target=self._loop, args=(warm_up,), name="talkgen-render", daemon=True)
        self._thread.start()

    def submit(self, job: ClipJob) -> None:
        job.epoch = self._epoch
        self._jobs.put(job)

    def pending(self) -> int:
        """Clips queued or being rendered."""
        with self._jobs.mutex:
            return self._jobs.unfinished_tasks

    def stop_all(self) -> None:
        self._epoch += 1

    def drop(self, job: ClipJob) -> None:
        """The clip of a reply that was stopped: it is not made, and nothing is said of it."""
        job.dropped = True
        if job.pieces is not None:
            job.pieces.fail(Stopped("the reply was stopped"))

    def wait(self) -> None:
        """Until every submitted clip is ready, failed or stopped. Ctrl-C interrupts the wait."""
        while self.pending():
            time.sleep(0.05)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _loop(self, warm_up: Callable[[], None] | None) -> None:
        if warm_up is not None:
            try:
                warm_up()
            except Exception:  # the first render loads again and reports the error there, in one line
                pass
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                self._one(job)
            finally:
                self._jobs.task_done()

    def _one(self, job: ClipJob) -> None:
        def check() -> None:
            if job.epoch != self._epoch or job.dropped:
                raise Stopped

        if job.dropped:
            return
        t = time.monotonic()
        try:
            check()
            record = self._cb.render(job, check)
        except (Stopped, feeds.Stopped):
            if not job.dropped:
                self._cb.stopped(job)
        except TalkgenError as exc:
            self._cb.failed(job, str(exc))
        except OSError as exc:
            self._cb.failed(job, f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}")
        except Exception as exc:  # a bug: report it in one line and keep the session alive
            self._cb.failed(job, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        else:
            self._cb.ready(job, record, time.monotonic() - t)
