"""The sequencer: one job's stages (talkgen/stages), each skipped when its cache key still holds.

Every job runs here: `talkgen render` (talkgen.pipeline), each `talkgen batch` job (and a
worker's look-ahead, which is the next job run until its speech), and each chat turn. It knows
the stages only by their declarations: what they read, their keys, the engine roles they need.

Every stage's key is known before any runs (stages/__init__.py), so which stages are fresh is
decided first; the fresh ones hand on their files, the others run. Where the engines of the
stages that run fit in memory together (always on a CPU; on GPUs, as the memory planner says),
they run side by side, each in a thread of its own, and each starts on what the one before it
has made so far: the voice speaks the first sentences while the LLM writes the next, the
planner cuts a chunk as soon as its audio is known, and each chunk renders as soon as it is
cut. Otherwise they run one after another in the calling thread, each engine let go before the
next loads. Either way the files are the same, byte for byte.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from talkgen.errors import UsageError
from talkgen.feeds import Restart, Stopped
from talkgen.placement import release
from talkgen.report import StageReport
from talkgen.stages import NAMES, Context, Feeds, Progress, Source, Stage, put_text, stage_list


@dataclass
class Outcome:
    reports: list[StageReport]  # in stage order
    first_chunk_s: float | None  # seconds from the start until the first chunk was on disk
    overlapped: bool  # the stages ran side by side
    wall_s: float


def stale_stages(force: list[str], from_stage: str | None) -> set[str]:
    for name in [*force, *([from_stage] if from_stage else [])]:
        if name not in NAMES:
            raise UsageError(f"unknown stage '{name}': stages are {', '.join(NAMES)}")
    stale = set(force)
    if from_stage:
        stale |= set(NAMES[NAMES.index(from_stage):])
    return stale


def roles_needed(source: Source, until: str | None = None) -> set[str]:
    """The engines a job's stages load (up to `until`), if none of them is cached."""
    return {role for stage in _applicable(source, until) for role in stage.roles} - {"vad", "ranks"}


def kept(job_root: Path) -> str:
    """What a stopped job leaves for the next run, in words: "kept the speech, the plan and 3 of 7 chunks in JOB"."""
    from talkgen.chunks import Plan, finished_count

    try:
        stages = json.loads((job_root / "manifest.json").read_text(encoding="utf-8"))["stages"]
    except (OSError, ValueError, KeyError, TypeError):
        stages = {}
    done = [s.kept for s in stage_list() if isinstance(stages.get(s.name), dict) and stages[s.name].get("complete", True)]
    if "render" not in stages:
        try:
            total = len(Plan.load(job_root / "plan.json").chunks) if "plan" in stages else 0
        except (OSError, ValueError, KeyError, TypeError):
            total = 0
        finished = finished_count(job_root)
        if finished:
            done.append(f"{min(finished, total)} of {total} chunks" if total else f"{finished} chunks")
    if not done:
        return f"nothing was finished yet (job {job_root})"
    listed = done[0] if len(done) == 1 else ", ".join(done[:-1]) + " and " + done[-1]
    return f"kept {listed} in {job_root}"


# Engine roles whose load takes seconds (imports of torch and transformers, Whisper's weights).
SLOW_LOADS = frozenset({"llm", "stt"})


def _applicable(source: Source, until: str | None) -> list[Stage]:
    stages = [s for s in stage_list() if s.applies(source)]
    if until is not None:
        names = [s.name for s in stages]
        if until not in names:
            raise ValueError(f"a job can stop after one of its stages ({', '.join(names)}), not {until}")
        stages = stages[: names.index(until) + 1]
    return stages


class _Watched(Progress):
    """A stage's view of the job's progress, from a thread of its own: every call first checks
    whether the job has stopped, which is how a stage that is busy hears of it."""

    def __init__(self, inner: Progress, stop: threading.Event):
        self.inner, self.stop = inner, stop

    def _check(self) -> None:
        if self.stop.is_set():
            raise Stopped("stopped")

    def stage(self, name: str, total: float | None, unit: str) -> None:
        self._check()
        self.inner.stage(name, total, unit)

    def advance(self, n: float = 1, stage: str = "") -> None:
        self._check()
        self.inner.advance(n, stage)

    def done(self, name: str, cache: str) -> None:
        self.inner.done(name, cache)

    def note(self, message: str) -> None:
        self.inner.note(message)

    def turn(self, index: int, question: str) -> None:
        self._check()
        self.inner.turn(index, question)

    def text(self, chunk: str) -> None:
        self._check()
        self.inner.text(chunk)


def run_stages(ctx: Context, until: str | None = None, overlap: bool = False,
               made_earlier: dict[str, float] | None = None, started: float | None = None,
               on_feeds: Callable[[Feeds], None] | None = None) -> Outcome:
    """Run the job's stages (up to and including `until`); their reports in order.

    made_earlier: stages an earlier run of this job in this process made (a batch worker's
    look-ahead), with their times; found fresh now, they are reported as made "ahead".
    started: when the job began (time.perf_counter()), which the time to the first chunk counts from.
    on_feeds: told of the feeds the stages hand their work on through, before they start (again,
    with new ones, if the job is run again: Restart)."""
    t0 = started if started is not None else time.perf_counter()
    stages = _applicable(ctx.source, until)
    for stage in stages:
        ctx.keys[stage.name] = stage.key(ctx)
    for stage in stages:
        if stage.name in ctx.stale:
            ctx.job.forget(stage.name)
    watch = on_feeds or (lambda feeds: None)
    try:
        watch(ctx.feeds)
        return _attempt(ctx, stages, overlap, made_earlier or {}, t0)
    except Restart:
        # A stage's early output was not its final one (stages/reply.py PieceStream): what was
        # made from it goes, and the job runs again one stage after another.
        from talkgen.chunks import clear_chunks

        clear_chunks(ctx.job.root)
        ctx.feeds, ctx.values = Feeds(), {}
        watch(ctx.feeds)
        return _attempt(ctx, stages, False, made_earlier or {}, t0)


def _attempt(ctx: Context, stages: list[Stage], overlap: bool, earlier: dict[str, float], t0: float) -> Outcome:
    fresh = {stage.name: ctx.job.is_fresh(stage.name, ctx.keys[stage.name]) for stage in stages}
    overlap = overlap and sum(not fresh[s.name] for s in stages) > 1
    running = {role for s in stages if not fresh[s.name] for role in s.roles}
    # A portrait with no face fails before any model work. Side by side, with no engine whose load
    # takes seconds and cannot be stopped midway, it is found while the engines load (the face
    # finder and a load take a core each), and its failure stops them.
    beside = overlap and bool(running) and not running & SLOW_LOADS
    if running and not beside:
        ctx.portrait()
    if ctx.source.say and ctx.source.kind == "script" and ctx.source.text is not None:
        put_text(ctx.feeds.text, ctx.source.text)
    progress = ctx.progress
    ctx.feeds.finished.listen(lambda index: progress.chunk(index, time.perf_counter() - t0))
    reports: dict[str, StageReport] = {}
    ctx.overlapped = overlap

    def execute(stage: Stage, view: Context) -> None:
        t = time.perf_counter()
        if fresh[stage.name]:
            stage.load(view)
            cache, wall = ("ahead", earlier[stage.name]) if stage.name in earlier else ("hit", None)
        else:
            try:
                rec = stage.run(view)
            finally:
                # The stage's engines go unless the holder keeps them: their memory (and GPU) goes to the next one.
                dropped = [view.engines.settle(role) for role in stage.roles]
                release(collect=any(dropped))
            rec.key, rec.wall_s, rec.complete = ctx.keys[stage.name], time.perf_counter() - t, True
            rec.engine = rec.engine or stage.engine(view)[0]
            ctx.job.record(stage.name, rec)
            cache, wall = "miss", None
        rec = ctx.job.stages[stage.name]
        name, version = stage.engine(view)
        detail = {k: v for k, v in rec.extra.items() if k != "output"}
        reports[stage.name] = StageReport(stage.name, cache, wall if wall is not None else time.perf_counter() - t, name,
                                          version, rec.device, detail=detail)
        view.progress.done(stage.name, cache)

    if overlap:
        _side_by_side(ctx, stages, execute, ctx.portrait if beside else None)
    else:
        for stage in stages:
            execute(stage, ctx)
    first = ctx.feeds.finished.first_at
    return Outcome([reports[s.name] for s in stages], None if first is None else round(first - t0, 3), overlap,
                   time.perf_counter() - t0)


def _side_by_side(ctx: Context, stages: list[Stage], execute, meanwhile: Callable[[], object] | None = None) -> None:
    """Each stage in a thread of its own; the first failure stops the others, and is raised here
    once they have all ended (as is a stop told to this thread: Ctrl-C, SIGTERM, or the failure of
    `meanwhile`, which this thread runs once the stages have started)."""
    from dataclasses import replace

    stop = threading.Event()
    errors: list[BaseException] = []
    view = replace(ctx, progress=_Watched(ctx.progress, stop))

    def work(stage: Stage) -> None:
        try:
            execute(stage, view)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            errors.append(exc)
            stop.set()
            ctx.feeds.fail(exc)

    threads = [threading.Thread(target=work, args=(s,), name=f"talkgen-{s.name}", daemon=True) for s in stages]
    for thread in threads:
        thread.start()
    try:
        if meanwhile is not None:
            meanwhile()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.1)  # a timed wait: the signal handlers run here between waits
    except BaseException as exc:  # Ctrl-C, stopping.Terminated or `meanwhile`: every stage stops, then this goes on up
        stop.set()
        ctx.feeds.fail(exc)
        for thread in threads:
            thread.join()
        raise
    if errors:
        # The first failure that is not another stage stopping because of it.
        raise next((e for e in errors if not isinstance(e, Stopped)), errors[0])


def fits_together(recipe, roles: set[str]) -> bool:
    """Whether every engine in `roles` fits in memory at once on its device (the memory planner,
    with all of them resident)."""
    import copy

    from talkgen.errors import TalkgenError
    from talkgen.memory import check_placement

    planned = copy.deepcopy(recipe)
    planned.placement.resident = sorted(roles)
    try:
        check_placement(planned, roles)
    except TalkgenError:
        return False
    return True


def overlaps(recipe, roles: set[str], live: bool = False) -> bool:
    """Whether the job's stages run side by side: only if their engines fit in memory together,
    and then when someone watches the video as it is made (`live`: time to the first chunk), or
    when each engine has GPUs of its own (h100-8x: the voice need not wait for the whole reply,
    nor the avatar for the whole speech). On a CPU the cores are shared, so a video nobody
    watches live is made one stage after another."""
    from talkgen.placement import gpu_indices

    if not fits_together(recipe, roles):
        return False
    if live:
        return True
    gpus = [gpu_indices(getattr(recipe.placement, role)) for role in roles]
    if any(not g for g in gpus):  # the CPU, or "cuda" (whichever GPU torch picks)
        return False
    flat = [i for g in gpus for i in g]
    return len(flat) == len(set(flat))
