"""render: the plan's chunks, one after another, each streamed into its own video file.

The chunks and their sidecars are kept by talkgen.chunks; this stage decides what the
render key covers, renders in talkgen's own process (back ends with a world size of 1)
and records the stage once every chunk is on disk. Multi-rank renders go through
talkgen.ranks.launch and write into the same chunk store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from talkgen import media
from talkgen.chunk_writer import ChunkFinisher, render_one
from talkgen.chunks import Chunk, Plan, all_finished, clear_chunks, clear_stale_chunks, chunk_name, next_chunk
from talkgen.engines.avatar import AvatarEngine
from talkgen.job import Job, StageRecord, cache_key, code_hash
from talkgen.speech import SpeechTrack

from talkgen.stages import Context, Stage

if TYPE_CHECKING:
    from talkgen.portrait import Portrait
    from talkgen.recipe import Recipe, RenderConfig

# The code that turns frames into the chunk store's files, for the render key; the back end's
# own code is in its identity, and how x264 is set up in the key as data (media.chunk_encoding).
MADE_BY = (__name__, "talkgen.chunk_writer", "talkgen.chunks")

def render_key(config: RenderConfig, engine: dict, **inputs: Any) -> str:
    """The render cache key: the inputs named (plan, speech, portrait), the back end's identity and
    the settings it declares change its frames (engines/registry.py Settings), the encoder's
    settings and the code of this stage. How and where it runs (GPUs, launcher, timeouts) is not
    in it: changing those resumes a render rather than discarding its chunks."""
    from talkgen.engines.registry import output_settings

    return cache_key(**inputs, engine=engine, settings=output_settings("avatar", config), fps=config.fps,
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
    plan: Plan | Iterable[Chunk],
    engine: AvatarEngine,
    track: SpeechTrack,
    crf: int,
    preset: str,
    on_frames: Callable[[int], None] | None = None,
    lookahead_s: float | None = None,
    on_finished: Callable[[Chunk], None] | None = None,
) -> StageRecord:
    """Render in this process (back ends with a world size of 1), chunk after chunk as the plan
    hands them on; a chunk already on disk with this key is kept.

    While the speech is still being spoken (a LiveTrack), a chunk starts once the speech is known
    `lookahead_s` past its end (the back end reads no further), or once it is whole when the
    back end does not say how far it reads. `on_finished` hears of each chunk on disk, in order."""
    whole = plan if isinstance(plan, Plan) else None
    arriving = iter([whole.chunks] if whole else ([chunk] for chunk in plan))
    clear_stale_chunks(job.root, key)
    told: set[int] = set()

    def finished(chunk: Chunk) -> None:  # once each, though a chunk whose continuity was lost is made again
        if on_finished is not None and chunk.index not in told:
            told.add(chunk.index)
            on_finished(chunk)

    finisher = ChunkFinisher(job.root, key, finished)
    known: list[Chunk] = []
    # Where this render goes on from: after the last chunk it made, with that chunk's continuity. Each
    # chunk that arrives is looked for from there, so a continuity lost behind finished chunks is found.
    base, continuity, reused, announced = 0, None, None, 0
    used: set[tuple[bool, bool]] = set()  # what of the track each chunk was made from (see below)
    try:
        for more in arriving:
            known += more
            while True:
                todo, start_from, at = next_chunk(job.root, known, key, base, continuity)
                for done in known[announced:at]:
                    finisher.announce(done)
                announced = max(announced, at)
                if todo is None:
                    break
                if reused is None:
                    reused = at
                    if on_frames:
                        on_frames(sum(c.frames for c in known[:at]))
                if lookahead_s is None:
                    track.wait_whole()
                else:
                    track.wait_for(int((todo.end_frame / engine.fps + lookahead_s) * track.sample_rate))
                used.add((track.aligned, bool(track.phonemes)))
                continuity = render_one(job.root, todo, key, engine, track, start_from, crf, preset, finisher, on_frames)
                base = announced = at + 1
        finisher.join()
    finally:
        finisher.abort()
    plan = whole or Plan(engine.fps, track.sample_rate, track.samples, known[-1].end_frame if known else 0, 0.0, known)
    whole_track = track.wait_whole()
    if used - {(whole_track.aligned, bool(whole_track.phonemes))}:
        # A later sentence changed how the whole speech is read (unaligned speech after aligned): the
        # chunks made before it were made from another reading than a render of the whole track makes.
        clear_chunks(job.root)
        return render_chunks(job, key, plan, engine, whole_track, crf, preset, on_frames, None, None)
    rec = collect(job, key, plan, len(known) if reused is None else reused)
    rec.extra["encode_wait_s"] = round(rec.extra["encode_wait_s"] + finisher.wait_s, 3)
    return rec


# -- the stage ---------------------------------------------------------------------------

def _key(ctx: Context) -> str:
    from talkgen.engines.avatar import traits_for
    from talkgen.portrait import portrait_hash

    c = ctx.recipe.render
    return render_key(c, traits_for(c).identity, plan=ctx.keys["plan"], speech=ctx.keys["speak"],
                      portrait=portrait_hash(ctx.portrait_path))


def _run(ctx: Context) -> StageRecord:
    import sys
    import time

    from talkgen.chunks import chunk_dir, clear_chunks
    from talkgen.engines.avatar import traits_for
    from talkgen.placement import runs_in_ranks

    c, key, job = ctx.recipe.render, ctx.keys["render"], ctx.job
    traits = traits_for(c)
    if "render" in ctx.stale:
        clear_chunks(job.root)  # redo on purpose: finished chunks too
    t = time.perf_counter()
    whole = ctx.feeds.plan.so_far()  # the plan, when it was made before this stage started
    ctx.progress.stage("render", whole[0].total_frames if whole else None, "frames")
    advance = lambda n: ctx.progress.advance(n, "render")  # noqa: E731
    if runs_in_ranks(c):
        rec = _on_ranks(ctx, key, advance)
    else:
        if c.device == "cpu":
            # An avatar on the CPU (the puppet) loads in a fraction of a second: once there is
            # speech, so that it does not slow the loads the speech waits for.
            ctx.feeds.speech.wait()
        loading = time.perf_counter()
        engine = ctx.engines.avatar(c, ctx.portrait(), state_dir=chunk_dir(job.root))
        load_s = time.perf_counter() - loading
        track = ctx.feeds.speech.wait()
        rec = render_chunks(job, key, iter(ctx.feeds.chunks), engine, track, c.crf, c.preset, on_frames=advance,
                            lookahead_s=traits.lookahead_s, on_finished=lambda ch: ctx.feeds.finished.put(ch.index))
        rec.extra.update(startup_s=round(load_s, 3), load_s=round(load_s, 3))
        rec.extra.update(python=sys.executable, torch=getattr(sys.modules.get("torch"), "__version__", ""))
    ctx.feeds.finished.close()
    plan = ctx.feeds.plan.wait()
    rendered = plan.total_frames - plan.frames_before(rec.extra.get("reused_chunks", 0))
    wall = max(1e-9, time.perf_counter() - t)
    rec.extra["fps_rendered"] = round(rendered / wall, 1)
    # Everything but the back end's own frame making: start-up, broadcasts, encoder waits, teardown.
    rec.extra["overhead_ratio"] = round(max(0.0, wall - rec.extra["backend_compute_s"]) / wall, 4)
    rec.extra["ranks"] = c.nproc
    rec.extra["check_expects"] = traits.check  # what talkgen check may expect of this back end's video
    return rec


def _on_ranks(ctx: Context, key: str, advance: Callable[[int], None]) -> StageRecord:
    """The avatar's ranks render the whole plan once it and the speech are on disk (they read
    them from the job), each chunk told as it appears."""
    from talkgen.chunks import next_chunk
    from talkgen.engines.avatar import check_avatar
    from talkgen.feeds import Stopped
    from talkgen.ranks.timing import rank_timings

    c, job = ctx.recipe.render, ctx.job
    check_avatar(c)  # missing files or GPUs fail here, in one line, not in every rank
    plan = ctx.feeds.plan.wait()
    ctx.feeds.speech.wait().wait_whole()
    clear_stale_chunks(job.root, key)
    _, _, reused = next_chunk(job.root, plan, key)
    advance(plan.frames_before(reused))
    for chunk in plan.chunks[:reused]:
        ctx.feeds.finished.put(chunk.index)
    request = rank_request(ctx.recipe, ctx.portrait(), job.root, key)  # no face: fails here
    # The worker's rank group, launched with its first job and kept up for the next.
    group = ctx.engines.ranks(c, ctx.group_root or job.root)

    def told(chunk: Chunk) -> None:
        advance(chunk.frames)
        ctx.feeds.finished.put(chunk.index)

    def check() -> None:
        if ctx.feeds.finished.failed:
            raise Stopped("stopped")

    handed = group.render(job.root, request, plan, skip=set(range(reused)), on_chunk=told, check=check)
    rec = collect(job, key, plan, reused)
    rec.extra.update(rank_timings(job.root, c.nproc, handed, rec.extra["encode_wait_s"]))
    rec.extra.update(group_launches=ctx.engines.launches, group_job=group.jobs)
    return rec


def _load(ctx: Context) -> None:
    for chunk in ctx.feeds.chunks:
        ctx.feeds.finished.put(chunk.index)
    ctx.feeds.finished.close()


def _engine(ctx: Context) -> tuple[str, str]:
    from talkgen.engines.avatar import traits_for

    return ctx.recipe.render.engine, traits_for(ctx.recipe.render).identity.get("version", "")


STAGE = Stage("render", reads=("plan", "speak", "portrait"), writes=("chunks/",), roles=("avatar", "ranks"), kept="every chunk",
              applies=lambda source: True, key=_key, run=_run, load=_load, engine=_engine)
