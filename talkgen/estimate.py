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
    # Where reports on the same hardware disagree: the slowest, with its source. The estimate
    # shows the range until talkgen has measured its own.
    slowest_per_video_s: float | None = None
    slowest_source: str = ""


# Measured by benchmarks/bench_render.py (docs/benchmarks.md): 10.8 s for 36 s of video with the
# face rig, talkgen check included, under a load average of 1.7 to 3.2.
PUPPET = Figure(0.298, "measured: render --say at 512x512, warm, on a 2-core x86_64 with no GPU (2026-12-01)")
# Piper, planning and assembly on that machine: the whole 0.298 less the rig's render stage (25 / 260 fps).
CPU_STAGES_PER_S = PUPPET.seconds_per_video_s - 25 / 260
# LiveAvatar on 5 ranks, as its users report it on 5x H100 80GB; talkgen has not run it on a GPU.
# Its authors report 45 fps on 5x H800, which no user has reported reproducing on H100s. Each
# figure adds the embedded speech stages as measured on the CPU (the production speech
# engines' GPU time is not measured yet); talkgen's own calls (a generate() per chunk, each
# encoding the prompt, audio and motion again) are not in them either.
_SPEECH = " plus the speech stages as measured on a 2-core CPU; not measured by talkgen"
LIVEAVATAR_TPP = Figure(
    25 / 20 + CPU_STAGES_PER_S,
    "about 20 fps on 5x H100 80GB with FP8 and torch.compile, as h100-8x runs it (a user's report, "
    "github.com/Alibaba-Quark/LiveAvatar/issues/38, 2026-02-10)" + _SPEECH,
    25 / 8.7 + CPU_STAGES_PER_S,
    "8.7 fps on 5x H100 80GB with upstream's multi-GPU script as it was before its FP8 and compilation release of "
    "2026-01-20 (a user's report, github.com/Alibaba-Quark/LiveAvatar/issues/22, 2025-12-24)" + _SPEECH,
)


def figure_for(recipe) -> Figure | None:
    r = recipe.render
    if r.engine == "puppet":
        return PUPPET
    if r.engine == "liveavatar" and r.nproc >= 5:
        return LIVEAVATAR_TPP
    return None  # LiveAvatar on one GPU (offload) and tp-test have no figure yet


def estimate(recipe, video_s: float = 60.0) -> dict | None:
    """The render report's cost section for `video_s` of video, from the benchmark figure; None
    when there is none. Where the figure has a slowest report beside it, "slowest" holds the
    same section from that one."""
    fig = figure_for(recipe)
    if fig is None:
        return None
    from talkgen.placement import gpus_held

    gpus = gpus_held(recipe)  # the report bills every GPU the placement holds, so the estimate does too

    def section(per_s: float, source: str) -> dict:
        out = cost([StageReport("render", "miss", per_s * video_s)], gpus, recipe.cost.gpu_hour_usd, video_s)
        out.update(video_s=video_s, source=source)
        return out

    out = section(fig.seconds_per_video_s, fig.source)
    if fig.slowest_per_video_s is not None:
        out["slowest"] = section(fig.slowest_per_video_s, fig.slowest_source)
    return out
