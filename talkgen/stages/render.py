"""render: the plan's chunks, one after another, each streamed into its own video file.

The chunks and their sidecars are kept by talkgen.chunks; this stage decides what the
render key covers, renders in talkgen's own process (back ends with a world size of 1)
and records the stage once every chunk is on disk. Multi-rank renders go through
talkgen.ranks.launch and write into the same chunk store.
"""

from __future__ import annotations

from typing import Callable

from talkgen.chunk_writer import ChunkFinisher, render_one
from talkgen.chunks import clear_stale_chunks, chunk_name, finished_chunk, next_chunk, state_file
from talkgen.engines.avatar import AvatarEngine
from talkgen.errors import TalkgenError
from talkgen.job import Job, StageRecord
from talkgen.speech import SpeechTrack

# Render settings that say how and where to run, not what the frames are: changing one
# (raising a timeout after a silent rank, moving to other cards) must resume the render, not
# discard its finished chunks. Chunk lengths are in the plan, the portrait's content and the
# back end's own settings in the key elsewhere.
HOW_TO_RUN = ("launcher", "python", "gpus", "collective_timeout_s", "max_chunk_s", "min_chunk_s", "portrait", "liveavatar")


def render_settings(config) -> dict:
    """The render settings that belong in a render cache key."""
    return {k: v for k, v in config.__dict__.items() if k not in HOW_TO_RUN}


def rank_request(recipe, portrait, job_root, key: str) -> dict:
    """What the avatar ranks get for one job: the recipe as they read it, the prepared
    portrait (written into the job), the render key, the backend and the GPUs."""
    from talkgen.engines.avatar import rank_recipe
    from talkgen.portrait import hand_to_ranks

    c = recipe.render
    return {"recipe": rank_recipe(recipe), "portrait": hand_to_ranks(portrait, job_root), "render_key": key,
            "backend": "nccl" if c.device == "cuda" else "gloo", "gpus": c.gpus}


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
