"""render: the plan's chunks, one after another, each streamed into its own video file.

The chunks and their sidecars are kept by talkgen.chunks; this stage decides what the
render key covers, renders in talkgen's own process (back ends with a world size of 1)
and records the stage once every chunk is on disk. Multi-rank renders go through
talkgen.ranks.launch and write into the same chunk store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from talkgen import media
from talkgen.chunk_writer import ChunkFinisher, render_one
from talkgen.chunks import Plan, all_finished, clear_stale_chunks, chunk_name, next_chunk
from talkgen.engines.avatar import AvatarEngine
from talkgen.job import Job, StageRecord, cache_key, code_hash
from talkgen.speech import SpeechTrack

if TYPE_CHECKING:
    from talkgen.portrait import Portrait
    from talkgen.recipe import Recipe, RenderConfig

# The code that turns frames into the chunk store's files, for the render key; the back end's
# own code is in its identity, and how x264 is set up in the key as data (media.chunk_encoding).
MADE_BY = (__name__, "talkgen.chunk_writer", "talkgen.chunks")

# Render settings that say how and where to run, not what the frames are: changing one
# (raising a timeout after a silent rank, moving to other cards) must resume the render, not
# discard its finished chunks. Chunk lengths are in the plan, the portrait's content and the
# back end's own settings in the key elsewhere.
HOW_TO_RUN = ("launcher", "python", "gpus", "collective_timeout_s", "max_chunk_s", "min_chunk_s", "portrait", "liveavatar")


def render_settings(config: RenderConfig) -> dict:
    """The render settings that belong in a render cache key."""
    return {k: v for k, v in config.__dict__.items() if k not in HOW_TO_RUN}


def render_key(config: RenderConfig, engine: dict, **inputs: Any) -> str:
    """The render cache key: the inputs named (plan, speech, portrait), the settings that shape
    the frames, the back end's identity, the encoder's settings and the code of this stage."""
    return cache_key(**inputs, render=render_settings(config), engine=engine,
                     encoder=media.chunk_encoding(config.crf, config.preset), talkgen=code_hash(*MADE_BY))


def rank_request(recipe: Recipe, portrait: Portrait, job_root: Path, key: str) -> dict:
    """What the avatar ranks get for one job: the recipe as they read it, the prepared
    portrait (written into the job), the render key, the backend and the GPUs."""
    from talkgen.engines.avatar import rank_recipe
    from talkgen.portrait import hand_to_ranks

    c = recipe.render
    return {"recipe": rank_recipe(recipe), "portrait": hand_to_ranks(portrait, job_root), "render_key": key,
            "backend": "nccl" if c.device == "cuda" else "gloo", "gpus": c.gpus}


def collect(job: Job, key: str, plan: Plan, reused: int) -> StageRecord:
    """The stage record once every chunk is on disk; an error naming the first missing one."""
    metas = all_finished(job.root, plan, key)
    rendered = metas[reused:]
    return StageRecord(key=key, outputs={chunk_name(c.index): m["sha256"] for c, m in zip(plan.chunks, metas)}, extra={
        "chunks": len(plan.chunks), "reused_chunks": reused,
        "backend_compute_s": round(sum(m.get("compute_s", 0.0) for m in rendered), 3),
        "encode_wait_s": round(sum(m.get("wait_s", 0.0) for m in rendered), 3),
    })


def render_chunks(
    job: Job,
    key: str,
    plan: Plan,
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
        on_frames(plan.frames_before(reused))
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
