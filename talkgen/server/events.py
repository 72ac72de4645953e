"""A job's events as server-sent events, from its log on disk (talkgen.batching.job_events).

Every client reads the log from its start, so one that connects late, or again after losing its
connection (with Last-Event-ID, the number of the last event it got), misses nothing; the
stream ends after the job's last event (done, failed or cancelled). A client that goes away
only ends its own stream: nothing else waits on it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import AsyncIterator, Callable

from talkgen.batching import job_events

POLL_S = 0.05  # a new event reaches the page this long after it is logged, at most
KEEPALIVE_S = 15.0  # a comment line now and then, so proxies and tunnels keep an idle stream open


def frame(number: int, event: dict) -> str:
    data = {k: v for k, v in event.items() if k != "event"}
    return f"id: {number}\nevent: {event['event']}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def stream(job_dir: Path, after: int, stopping: Callable[[], bool]) -> AsyncIterator[str]:
    """The log's events after the first `after`, as they are appended, until the job's last one."""
    offset, number, quiet = 0, 0, 0.0
    while not stopping():
        events, offset = job_events.read(job_dir, offset)
        for event in events:
            number += 1
            if number > after:
                yield frame(number, event)
            if event.get("event") in job_events.TERMINAL:
                return
        if events:
            quiet = 0.0
            continue
        await asyncio.sleep(POLL_S)
        quiet += POLL_S
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"
