"""Writing chunks: one chunk's frames streamed from the back end into its encoder, and the
thread that closes each encoder and writes the chunk's sidecar behind the back end.

Used in talkgen's own process and in the avatar ranks alike, so it imports only the
standard library and talkgen's media and chunk store (the ranks may run in another Python).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from talkgen.chunks import Chunk, chunk_name, sidecar_path, state_file
from talkgen.errors import TalkgenError
from talkgen.job import sha256_file, write_json_atomic
from talkgen.media import ChunkEncoder

if TYPE_CHECKING:
    from talkgen.engines.avatar import AvatarEngine
    from talkgen.speech import SpeechTrack

# Frames buffered per chunk between the back end and x264: enough for about two seconds of
# 720p video, so the back end is rarely held up, without holding a whole chunk twice.
ENCODE_QUEUE_MB = 128


class ChunkFinisher:
    """Closes each chunk's encoder, checks its length and writes its sidecar, on a thread of its own.

    The back end goes on to the next chunk while ffmpeg drains the last one. Chunks finish
    in order, so a chunk's sidecar never appears before the one before it; at most one chunk
    waits to be finished, so encoders cannot pile up behind a fast back end.
    """

    def __init__(self, job_root: Path, key: str, on_finished: Callable[[Chunk], None] | None = None):
        import queue
        import threading

        self.job_root, self.key = job_root, key
        self.on_finished = on_finished  # told of each chunk on disk, in order (on the finisher's thread)
        self.error: BaseException | None = None
        self.wait_s = 0.0  # the back end held up waiting for chunks to finish
        self._pending: queue.Queue = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._loop, name="finish chunks", daemon=True)
        self._thread.start()

    def submit(self, encoder: ChunkEncoder, chunk: Chunk, meta: dict) -> None:
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

    def announce(self, chunk: Chunk) -> None:
        """A chunk found on disk (a resumed render): told to on_finished in its turn, after the chunks before it."""
        if self.on_finished is not None:
            self._pending.put((None, chunk, None))

    def _loop(self) -> None:
        while (item := self._pending.get()) is not None:
            encoder, chunk, meta = item
            if self.error is not None:
                if encoder is not None:
                    encoder.abort()
                continue
            try:
                if encoder is not None:
                    _finish(self.job_root, self.key, encoder, chunk, meta)
                if self.on_finished is not None:
                    self.on_finished(chunk)
            except BaseException as exc:  # noqa: BLE001 - handed to the rendering thread
                exc.chunk = chunk.index
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


def _finish(job_root: Path, key: str, encoder: ChunkEncoder, chunk: Chunk, meta: dict) -> None:
    n = chunk.frames
    encoder.close()
    path = job_root / chunk_name(chunk.index)
    if encoder.frames != n:
        path.unlink(missing_ok=True)
        raise TalkgenError(f"chunk {chunk.index} has {encoder.frames} frames, the plan says {n}: the avatar engine is at fault")
    write_json_atomic(sidecar_path(job_root, chunk.index), {
        "index": chunk.index, "frames": n, "sha256": sha256_file(path), "key": key, **meta,
    })
    _drop_previous_state(job_root, chunk.index, meta.get("continuity"))


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
    chunk: Chunk,
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

    frames = engine.render_chunk(track, chunk.start_frame, chunk.end_frame, continuity)
    if finisher is None:
        for _ in frames:
            pass
        return None
    compute = 0.0
    encoder = ChunkEncoder(job_root / chunk_name(chunk.index), engine.width, engine.height, engine.fps, crf=crf, preset=preset,
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
        after = engine.continuity_after(chunk.end_frame)
        meta = {"continuity": after, "compute_s": round(compute, 4), "wait_s": round(encoder.wait_s, 4)}
    except BaseException:
        encoder.abort()
        raise
    finisher.submit(encoder, chunk, meta)
    return after
