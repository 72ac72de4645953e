"""The plan's chunks and the chunk store: where a job's rendered chunks live and what a resume starts from.

Each chunk file appears atomically when complete, followed by a small JSON sidecar with
its sha256, its frame count, the render key and the continuity state for the next chunk.
A chunk counts as done only when both are there and agree, so a render killed at any
point (in talkgen's process or in any avatar rank) resumes at the first chunk not on disk.

Below the stages: the render stage, the avatar ranks and the back ends all use it, and it
needs nothing but the standard library (the ranks may run in another Python).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkgen.errors import TalkgenError
from talkgen.job import sha256_file

CHUNKS = "chunks"


@dataclass(frozen=True)
class Chunk:
    """Frames [start_frame, end_frame) of the video, cut where the speech pauses for pause_s."""

    index: int
    start_frame: int
    end_frame: int
    start_s: float = 0.0
    end_s: float = 0.0
    pause_s: float = 0.0

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame


@dataclass
class Plan:
    """plan.json: the render's unit of work (its format is described in talkgen/stages/plan.py)."""

    fps: int
    sample_rate: int
    samples: int
    total_frames: int
    max_chunk_s: float
    chunks: list[Chunk]
    frames_per_clip: int = 1
    lead_frames: int = 0

    def frames_before(self, position: int) -> int:
        """The frames of the chunks ahead of `position`: those a resume starting there keeps."""
        return sum(c.frames for c in self.chunks[:position])

    def seams(self) -> list[int]:
        """The frames where one chunk ends and the next begins."""
        return [c.end_frame for c in self.chunks[:-1]]

    def to_dict(self) -> dict:
        # plan.json's own key order, so a plan written now is byte for byte the one written before.
        data = dataclasses.asdict(self)
        return {**{k: data[k] for k in _PLAN_KEYS}, "chunks": data["chunks"]}

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        """A plan as plan.json holds it; KeyError or TypeError where it is not one."""
        chunks = [Chunk(**{k: c[k] for k in _CHUNK_KEYS if k in c}) for c in data["chunks"]]
        return cls(chunks=chunks, **{k: data[k] for k in _PLAN_KEYS if k in data})

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


_PLAN_KEYS = ("fps", "sample_rate", "samples", "total_frames", "max_chunk_s", "frames_per_clip", "lead_frames")
_CHUNK_KEYS = tuple(f.name for f in dataclasses.fields(Chunk))


def chunk_name(index: int) -> str:
    return f"{CHUNKS}/{index:05d}.mp4"


def chunk_dir(job_root: Path) -> Path:
    """The job's chunk folder, made if it is not there: chunks and large continuity state live in it."""
    folder = job_root / CHUNKS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def finished_count(job_root: Path) -> int:
    """How many chunks of the job are whole on disk, whatever key they were rendered with."""
    # Sidecars only: one is written last, once its chunk is complete.
    return len(list((job_root / CHUNKS).glob("[0-9]*.mp4.json")))


def sidecar_path(job_root: Path, index: int) -> Path:
    return job_root / f"{chunk_name(index)}.json"


def finished_chunk(job_root: Path, chunk: Chunk, key: str) -> dict | None:
    """The sidecar of a chunk that is on disk, complete and rendered with this key; else None."""
    side = sidecar_path(job_root, chunk.index)
    video = job_root / chunk_name(chunk.index)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or meta.get("frames") != chunk.frames:
        return None
    if not video.is_file() or sha256_file(video) != meta.get("sha256"):
        return None
    return meta


def clear_chunks(job_root: Path) -> None:
    """Every chunk, finished or not: for a render redone on purpose."""
    shutil.rmtree(job_root / CHUNKS, ignore_errors=True)


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


def next_chunk(job_root: Path, plan: Plan | list[Chunk], key: str, start: int = 0, continuity: Any = None) -> tuple[Chunk | None, Any, int]:
    """From chunk `start` on: (first chunk not done, the continuity to start it with, its position).
    `plan` may be the chunks cut so far, while the rest of the speech is still being planned.

    Where that continuity's state file is gone (a chunk deleted or damaged after the chunks
    behind it had dropped their state), the finished chunks back to the last one whose
    state survives are marked undone and rendered again, so that continuity is never invented.
    """
    chunks = plan.chunks if isinstance(plan, Plan) else plan
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
        sidecar_path(job_root, chunks[j].index).unlink(missing_ok=True)
    return chunks[start + back], incoming[back], start + back


def all_finished(job_root: Path, plan: Plan, key: str) -> list[dict]:
    """Every chunk's sidecar, in plan order, once the whole plan is on disk; an error naming
    the first chunk that is not. A complete render needs no continuity state, so any state
    file left is deleted."""
    metas = []
    for chunk in plan.chunks:
        meta = finished_chunk(job_root, chunk, key)
        if meta is None:
            raise TalkgenError(f"chunk {chunk.index} is missing after the render: run the same command again to resume")
        metas.append(meta)
    for path in filter(None, (state_file(meta.get("continuity")) for meta in metas)):
        path.unlink(missing_ok=True)
    return metas
