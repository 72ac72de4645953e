"""Where a torchrun render's time went before and around the frames, from the ranks' timing files."""

from __future__ import annotations

import json
from pathlib import Path


def rank_timings(job_root: Path, nproc: int, launched: float, encode_wait_s: float) -> dict:
    """Start-up figures for the stage record: the slowest rank sets each one.

    startup_s: from the launch until every rank was ready to render (spawning, importing
    torch, the rendezvous, loading the back end); load_s: the back end's load within it;
    encode_wait_s: the chunks' own waits plus the output rank's waits for its finisher;
    python and torch: the interpreter the ranks ran under and its torch version.
    """
    from talkgen.ranks.worker import timing_path

    ranks = []
    for rank in range(nproc):
        try:
            ranks.append(json.loads(timing_path(job_root, rank).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}  # the figures are a report, not a result: leave them out rather than guess
    return {
        "startup_s": round(max(t["ready"] for t in ranks) - launched, 3),
        "load_s": round(max(t["ready"] - t["joined"] for t in ranks), 3),
        "encode_wait_s": round(encode_wait_s + sum(t.get("wait_s", 0.0) for t in ranks), 3),
        "python": ranks[0].get("python", ""),
        "torch": ranks[0].get("torch", ""),
    }
