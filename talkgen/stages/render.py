"""render: the plan's chunks, one after another, each streamed into its own video file.

Each chunk file appears atomically when complete, followed by a small JSON sidecar with
its sha256, its frame count, the render key and the continuity state for the next chunk.
A chunk counts as done only when both are there and agree, so a render killed at any
point (in this process or in any torchrun rank) resumes at the first chunk not on disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from talkgen.engines.avatar import AvatarEngine
from talkgen.errors import TalkgenError
from talkgen.job import Job, StageRecord, sha256_file, write_json_atomic
from talkgen.media import ChunkEncoder
from talkgen.speech import SpeechTrack

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


def next_chunk(job_root: Path, plan: dict, key: str, start: int = 0, continuity: Any = None) -> tuple[dict | None, Any, int]:
    """From chunk `start` on: (first chunk not done, the continuity to start it with, its position)."""
    chunks = plan["chunks"]
    for i in range(start, len(chunks)):
        meta = finished_chunk(job_root, chunks[i], key)
        if meta is None:
            return chunks[i], continuity, i
        continuity = meta.get("continuity")
    return None, continuity, len(chunks)


def render_one(
    job_root: Path,
    chunk: dict,
    key: str,
    engine: AvatarEngine,
    track: SpeechTrack,
    continuity: Any,
    crf: int,
    preset: str,
    write: bool = True,
    on_frames: Callable[[int], None] | None = None,
) -> None:
    """Render one chunk. Every rank drives the engine; only the output rank (`write`) encodes.

    The sidecar records `compute_s`, the time spent inside the back end making frames, so
    the orchestration's own overhead can be told apart from the model's work.
    """
    import time

    n = chunk["end_frame"] - chunk["start_frame"]
    frames = engine.render_chunk(track, chunk["start_frame"], chunk["end_frame"], continuity)
    if not write:
        for _ in frames:
            pass
        return
    compute = 0.0
    path = job_root / chunk_name(chunk["index"])
    encoder = ChunkEncoder(path, engine.width, engine.height, engine.fps, crf=crf, preset=preset)
    try:
        while True:
            t = time.perf_counter()
            frame = next(frames, None)
            compute += time.perf_counter() - t
            if frame is None:
                break
            encoder.write(frame)
            if on_frames:
                on_frames(1)
    except BaseException:
        encoder.abort()
        raise
    encoder.close()
    if encoder.frames != n:
        path.unlink(missing_ok=True)
        raise TalkgenError(f"chunk {chunk['index']} has {encoder.frames} frames, the plan says {n}: the avatar engine is at fault")
    write_json_atomic(sidecar_path(job_root, chunk["index"]), {
        "index": chunk["index"], "frames": n, "sha256": sha256_file(path), "key": key,
        "continuity": engine.continuity_after(chunk["end_frame"]), "compute_s": round(compute, 4),
    })


def collect(job: Job, key: str, plan: dict, reused: int) -> StageRecord:
    """The stage record once every chunk is on disk; an error naming the first missing one."""
    outputs = {}
    compute = 0.0
    for i, chunk in enumerate(plan["chunks"]):
        meta = finished_chunk(job.root, chunk, key)
        if meta is None:
            raise TalkgenError(f"chunk {chunk['index']} is missing after the render: run the same command again to resume")
        outputs[chunk_name(chunk["index"])] = meta["sha256"]
        if i >= reused:
            compute += meta.get("compute_s", 0.0)
    return StageRecord(key=key, outputs=outputs, extra={
        "chunks": len(plan["chunks"]), "reused_chunks": reused, "backend_compute_s": round(compute, 3),
    })


def render_chunks(
    job: Job,
    key: str,
    plan: dict,
    engine: AvatarEngine,
    track: SpeechTrack,
    crf: int,
    preset: str,
    on_frames: Callable[[int], None] | None = None,
) -> StageRecord:
    """Render in this process (back ends with a world size of 1)."""
    clear_stale_chunks(job.root, key)
    chunk, continuity, reused = next_chunk(job.root, plan, key)
    if on_frames:
        on_frames(sum(c["end_frame"] - c["start_frame"] for c in plan["chunks"][:reused]))
    while chunk is not None:
        render_one(job.root, chunk, key, engine, track, continuity, crf, preset, on_frames=on_frames)
        chunk, continuity, _ = next_chunk(job.root, plan, key, chunk["index"], continuity)
    return collect(job, key, plan, reused)
