"""The chunk store: where a job's rendered chunks live and what a resume starts from.

Each chunk file appears atomically when complete, followed by a small JSON sidecar with
its sha256, its frame count, the render key and the continuity state for the next chunk.
A chunk counts as done only when both are there and agree, so a render killed at any
point (in talkgen's process or in any avatar rank) resumes at the first chunk not on disk.

Below the stages: the render stage, the avatar ranks and the back ends all use it, and it
needs nothing but the standard library (the ranks may run in another Python).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from talkgen.job import sha256_file

CHUNKS = "chunks"


def chunk_name(index: int) -> str:
    return f"{CHUNKS}/{index:05d}.mp4"


def sidecar_path(job_root: Path, index: int) -> Path:
    return job_root / f"{chunk_name(index)}.json"


def finished_chunk(job_root: Path, chunk: dict, key: str) -> dict | None:
    """The sidecar of a chunk that is on disk, complete and rendered with this key; else None."""
    side = sidecar_path(job_root, chunk["index"])
    video = job_root / chunk_name(chunk["index"])
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or meta.get("frames") != chunk["end_frame"] - chunk["start_frame"]:
        return None
    if not video.is_file() or sha256_file(video) != meta.get("sha256"):
        return None
    return meta


def clear_stale_chunks(job_root: Path, key: str) -> None:
    """Chunks rendered under another key are of no use: remove them before a new render."""
    folder = job_root / CHUNKS
    for side in folder.glob("*.mp4.json"):
        try:
            stale = json.loads(side.read_text(encoding="utf-8")).get("key") != key
        except (OSError, ValueError):
            stale = True
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            return


# A continuity may keep state too large for a sidecar in a file, named by its absolute path
# under this key. Only the last finished chunk's file is ever needed, so each is deleted once
# the chunk after it is on disk, and the last once the whole plan is.
STATE_FILE = "state_file"


def state_file(continuity: Any) -> Path | None:
    if isinstance(continuity, dict) and continuity.get(STATE_FILE):
        return Path(continuity[STATE_FILE])
    return None


def _state_lost(continuity: Any) -> bool:
    path = state_file(continuity)
    return path is not None and not path.is_file()


def next_chunk(job_root: Path, plan: dict, key: str, start: int = 0, continuity: Any = None) -> tuple[dict | None, Any, int]:
    """From chunk `start` on: (first chunk not done, the continuity to start it with, its position).

    Where that continuity's state file is gone (a chunk deleted or damaged after the chunks
    behind it had dropped their state), the finished chunks back to the last one whose
    state survives are marked undone and rendered again, so that continuity is never invented.
    """
    chunks = plan["chunks"]
    incoming = [continuity]  # incoming[j]: the continuity chunk start + j starts from
    for i in range(start, len(chunks)):
        meta = finished_chunk(job_root, chunks[i], key)
        if meta is None:
            break
        incoming.append(meta.get("continuity"))
    else:
        return None, incoming[-1], len(chunks)
    back = len(incoming) - 1
    while back > 0 and _state_lost(incoming[back]):
        back -= 1
    for j in range(start + back, i):
        sidecar_path(job_root, chunks[j]["index"]).unlink(missing_ok=True)
    return chunks[start + back], incoming[back], start + back
