"""render: the plan's chunks, one after another, each streamed into its own video file.

A chunk file appears atomically when complete and is recorded in the manifest at once,
so a render killed at any point resumes at the first chunk that is not on disk.
"""

from __future__ import annotations

import shutil
from typing import Callable

from talkgen.engines.avatar import AvatarEngine
from talkgen.job import Job, StageRecord, sha256_file
from talkgen.media import ChunkEncoder
from talkgen.speech import SpeechTrack

CHUNKS = "chunks"


def chunk_name(index: int) -> str:
    return f"{CHUNKS}/{index:05d}.mp4"


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
    rec = job.stages.get("render")
    if rec is None or rec.key != key:
        shutil.rmtree(job.path(CHUNKS), ignore_errors=True)
        rec = StageRecord(key=key, engine=engine.identity()["engine"], complete=False, extra={"reused_chunks": 0})
    done = dict(rec.outputs)
    rec.outputs = {}
    continuity = None
    reused = 0
    for chunk in plan["chunks"]:
        name = chunk_name(chunk["index"])
        path = job.path(name)
        n = chunk["end_frame"] - chunk["start_frame"]
        if name in done and path.is_file() and sha256_file(path) == done[name]:
            rec.outputs[name] = done[name]
            continuity = engine.continuity_after(chunk["end_frame"])
            reused += 1
            if on_frames:
                on_frames(n)
            continue
        encoder = ChunkEncoder(path, engine.width, engine.height, engine.fps, crf=crf, preset=preset)
        try:
            for frame in engine.render_chunk(track, chunk["start_frame"], chunk["end_frame"], continuity):
                encoder.write(frame)
                if on_frames:
                    on_frames(1)
        except BaseException:
            encoder.abort()
            raise
        encoder.close()
        if encoder.frames != n:
            from talkgen.errors import TalkgenError

            raise TalkgenError(f"chunk {chunk['index']} has {encoder.frames} frames, the plan says {n}: the avatar engine is at fault")
        continuity = engine.continuity_after(chunk["end_frame"])
        rec.outputs[name] = sha256_file(path)
        job.record("render", rec)
    rec.complete = True
    rec.extra["reused_chunks"] = reused
    rec.extra["chunks"] = len(plan["chunks"])
    return rec
