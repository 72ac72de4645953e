"""What one stage hands to the next, whole or while it is being made.

A feed is a list that grows and is then closed: the text to speak sentence by sentence, the
plan's chunks as the planner cuts them, the chunks as they are finished. A stage that was
cached fills its feed at once; a stage that runs fills it as it goes, and the stage after it
reads each item as soon as it is there. When the run stops (a stage failed, or the job was
told to stop) every feed fails, and whoever waits on one raises Stopped.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")
POLL_S = 0.1  # waits wake this often, so a stop is seen even when no producer notifies


class Stopped(Exception):
    """The run this feed belongs to stopped: another stage failed, or the job was told to stop."""


class Restart(Exception):
    """What a stage handed on while it worked turned out not to be what it made in the end: the
    stages after it worked from something else. The job is run again, one stage after another."""

    def __init__(self, message: str, made: Any = None):
        super().__init__(message)
        self.made = made  # what the stage made in the end


class Feed(Generic[T]):
    def __init__(self) -> None:
        self._items: list[T] = []
        self._closed = False
        self._failed: BaseException | None = None
        self._cond = threading.Condition()
        self._listeners: list[Callable[[T], None]] = []
        self.first_at: float | None = None  # time.perf_counter() when the first item came

    def listen(self, listener: Callable[[T], None]) -> None:
        """Call `listener` with each item as it is put (in the putting thread)."""
        self._listeners.append(listener)

    def put(self, item: T) -> None:
        with self._cond:
            if self.first_at is None:
                self.first_at = time.perf_counter()
            self._items.append(item)
            self._cond.notify_all()
        for listener in self._listeners:
            listener(item)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def fail(self, reason: BaseException | None = None) -> None:
        """Every reader waiting now or later raises Stopped (from `reason`)."""
        with self._cond:
            self._failed = reason or Stopped("stopped")
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failed(self) -> bool:
        return self._failed is not None

    def get(self, index: int) -> T | None:
        """Item `index`, waiting for it; None once the feed is closed with fewer items."""
        with self._cond:
            while True:
                if self._failed is not None:
                    raise Stopped(str(self._failed)) from self._failed
                if index < len(self._items):
                    return self._items[index]
                if self._closed:
                    return None
                self._cond.wait(POLL_S)

    def __iter__(self) -> Iterator[T]:
        i = 0
        while (item := self.get(i)) is not None:
            yield item
            i += 1

    def all(self) -> list[T]:
        """Every item, once the feed is closed."""
        with self._cond:
            while not self._closed:
                if self._failed is not None:
                    raise Stopped(str(self._failed)) from self._failed
                self._cond.wait(POLL_S)
            return list(self._items)

    def so_far(self) -> list[T]:
        with self._cond:
            return list(self._items)


class Value(Feed[Any]):
    """A feed of one item: a value that is there at once or later (the speech track, the plan)."""

    def set(self, value: Any) -> None:
        self.put(value)
        self.close()

    def wait(self) -> Any:
        value = self.get(0)
        if value is None:
            raise Stopped("closed without a value")
        return value
