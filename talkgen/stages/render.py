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


# Render settings that say how and where to run, not what the frames are: changing one
# (raising a timeout after a silent rank, moving to other cards) must resume the render, not
# discard its finished chunks. Chunk lengths are in the plan, the portrait's content and the
# back end's own settings in the key elsewhere.
HOW_TO_RUN = ("launcher", "gpus", "collective_timeout_s", "max_chunk_s", "min_chunk_s", "portrait", "liveavatar")


def render_settings(config) -> dict:
    """The render settings that belong in a render cache key."""
    return {k: v for k, v in config.__dict__.items() if k not in HOW_TO_RUN}


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


# Frames buffered per chunk between the back end and x264: enough for about two seconds of
# 720p video, so the back end is rarely held up, without holding a whole chunk twice.
ENCODE_QUEUE_MB = 128


class ChunkFinisher:
    """Closes each chunk's encoder, checks its length and writes its sidecar, on a thread of its own.

    The back end goes on to the next chunk while ffmpeg drains the last one. Chunks finish
    in order, so a chunk's sidecar never appears before the one before it; at most one chunk
    waits to be finished, so encoders cannot pile up behind a fast back end.
    """

    def __init__(self, job_root: Path, key: str):
        import queue
        import threading

        self.job_root, self.key = job_root, key
        self.error: BaseException | None = None
        self.wait_s = 0.0  # the back end held up waiting for chunks to finish
        self._pending: queue.Queue = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._loop, name="finish chunks", daemon=True)
        self._thread.start()

    def submit(self, encoder: ChunkEncoder, chunk: dict, meta: dict) -> None:
        """Queue a chunk whose frames are all written (waiting, if the one before is still finishing)."""
        import time

        try:
            self.check()
        except BaseException:
            encoder.abort()
            raise
        t = time.perf_counter()
        self._pending.put((encoder, chunk, meta))
        self.wait_s += time.perf_counter() - t

    def _loop(self) -> None:
        while (item := self._pending.get()) is not None:
            encoder, chunk, meta = item
            if self.error is not None:
                encoder.abort()
                continue
            try:
                _finish(self.job_root, self.key, encoder, chunk, meta)
            except BaseException as exc:  # noqa: BLE001 - handed to the rendering thread
                exc.chunk = chunk["index"]
                self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def join(self) -> None:
        """Wait for every queued chunk; raise the first failure."""
        import time

        t = time.perf_counter()
        self._pending.put(None)
        self._thread.join()
        self.wait_s += time.perf_counter() - t
        self.check()

    def abort(self) -> None:
        """Stop after a failure elsewhere: queued chunks are dropped, not finished. Safe after join."""
        if not self._thread.is_alive():
            return
        if self.error is None:
            self.error = RuntimeError("aborted")
        self._pending.put(None)
        self._thread.join()


def _finish(job_root: Path, key: str, encoder: ChunkEncoder, chunk: dict, meta: dict) -> None:
    n = chunk["end_frame"] - chunk["start_frame"]
    encoder.close()
    path = job_root / chunk_name(chunk["index"])
    if encoder.frames != n:
        path.unlink(missing_ok=True)
        raise TalkgenError(f"chunk {chunk['index']} has {encoder.frames} frames, the plan says {n}: the avatar engine is at fault")
    write_json_atomic(sidecar_path(job_root, chunk["index"]), {
        "index": chunk["index"], "frames": n, "sha256": sha256_file(path), "key": key, **meta,
    })
    _drop_previous_state(job_root, chunk["index"], meta.get("continuity"))


def _drop_previous_state(job_root: Path, index: int, kept: Any) -> None:
    """Chunk `index` is on disk, so the chunk before it will never be rendered from again."""
    if index == 0:
        return
    try:
        before = json.loads(sidecar_path(job_root, index - 1).read_text(encoding="utf-8")).get("continuity")
    except (OSError, ValueError):
        return
    old = state_file(before)
    if old is not None and old != state_file(kept):
        old.unlink(missing_ok=True)


def render_one(
    job_root: Path,
    chunk: dict,
    key: str,
    engine: AvatarEngine,
    track: SpeechTrack,
    continuity: Any,
    crf: int,
    preset: str,
    finisher: ChunkFinisher | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> Any:
    """Render one chunk and return the continuity the next one starts from.

    Every rank drives the engine; only the output rank (the one given a `finisher`)
    encodes. The sidecar records `compute_s`, the time spent inside the back end making
    frames, and `wait_s`, the time the back end was held up by the encoder, so the
    orchestration's own overhead can be told apart from the model's work.
    """
    import time

    frames = engine.render_chunk(track, chunk["start_frame"], chunk["end_frame"], continuity)
    if finisher is None:
        for _ in frames:
            pass
        return None
    compute = 0.0
    encoder = ChunkEncoder(job_root / chunk_name(chunk["index"]), engine.width, engine.height, engine.fps, crf=crf, preset=preset,
                           queue_mb=ENCODE_QUEUE_MB)
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
        after = engine.continuity_after(chunk["end_frame"])
        meta = {"continuity": after, "compute_s": round(compute, 4), "wait_s": round(encoder.wait_s, 4)}
    except BaseException:
        encoder.abort()
        raise
    finisher.submit(encoder, chunk, meta)
    return after


def collect(job: Job, key: str, plan: dict, reused: int) -> StageRecord:
    """The stage record once every chunk is on disk; an error naming the first missing one.
    A complete render needs no continuity state, so any state file left is deleted."""
    outputs = {}
    compute = wait = 0.0
    states = []
    for i, chunk in enumerate(plan["chunks"]):
        meta = finished_chunk(job.root, chunk, key)
        if meta is None:
            raise TalkgenError(f"chunk {chunk['index']} is missing after the render: run the same command again to resume")
        outputs[chunk_name(chunk["index"])] = meta["sha256"]
        states.append(state_file(meta.get("continuity")))
        if i >= reused:
            compute += meta.get("compute_s", 0.0)
            wait += meta.get("wait_s", 0.0)
    for path in filter(None, states):
        path.unlink(missing_ok=True)
    return StageRecord(key=key, outputs=outputs, extra={
        "chunks": len(plan["chunks"]), "reused_chunks": reused, "backend_compute_s": round(compute, 3),
        "encode_wait_s": round(wait, 3),
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
    chunk, continuity, pos = next_chunk(job.root, plan, key)
    reused = pos
    if on_frames:
        on_frames(sum(c["end_frame"] - c["start_frame"] for c in plan["chunks"][:reused]))
    finisher = ChunkFinisher(job.root, key)
    try:
        while chunk is not None:
            continuity = render_one(job.root, chunk, key, engine, track, continuity, crf, preset, finisher, on_frames)
            chunk, continuity, pos = next_chunk(job.root, plan, key, pos + 1, continuity)
        finisher.join()
    finally:
        finisher.abort()
    rec = collect(job, key, plan, reused)
    rec.extra["encode_wait_s"] = round(rec.extra["encode_wait_s"] + finisher.wait_s, 3)
    return rec
