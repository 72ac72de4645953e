"""What a render costs before it runs: benchmark figures per avatar back end, in one place.

Each figure is wall seconds of a whole `render --say` per second of video, with the machine
it came from. The cost then comes from report.cost, the same sum the render report uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from talkgen.report import StageReport, cost


@dataclass(frozen=True)
class Figure:
    seconds_per_video_s: float
    source: str


# Measured by benchmarks/bench_render.py (docs/benchmarks.md): 10.8 s for 36 s of video with the
# face rig, talkgen check included, under a load average of 1.7 to 3.2.
PUPPET = Figure(0.298, "measured: render --say at 512x512, warm, on a 2-core x86_64 with no GPU (2026-12-01)")
# Piper, planning and assembly on that machine: the whole 0.298 less the rig's render stage (25 / 260 fps).
CPU_STAGES_PER_S = PUPPET.seconds_per_video_s - 25 / 260
# LiveAvatar's authors report 45 fps on 5 H800 with 4 steps and FP8; talkgen has not run it yet.
LIVEAVATAR_TPP = Figure(25 / 45 + CPU_STAGES_PER_S,
                        "LiveAvatar's reported 45 fps on 5x H800 (FP8, 4 steps), not measured by talkgen, "
                        "plus the embedded speech stages as measured on a 2-core x86_64 (the production "
                        "speech engines' GPU time is not measured yet)")


def figure_for(recipe) -> Figure | None:
    r = recipe.render
    if r.engine == "puppet":
        return PUPPET
    if r.engine == "liveavatar" and r.nproc >= 5:
        return LIVEAVATAR_TPP
    return None  # LiveAvatar on one GPU (offload) and tp-test have no figure yet


def estimate(recipe, video_s: float = 60.0) -> dict | None:
    """The render report's cost section for `video_s` of video, from the benchmark figure; None when there is none."""
    fig = figure_for(recipe)
    if fig is None:
        return None
    from talkgen.placement import gpus_held

    gpus = gpus_held(recipe)  # the report bills every GPU the placement holds, so the estimate does too
    out = cost([StageReport("render", "miss", fig.seconds_per_video_s * video_s)], gpus, recipe.cost.gpu_hour_usd, video_s)
    out.update(video_s=video_s, source=fig.source)
    return out
