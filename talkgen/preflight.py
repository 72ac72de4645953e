"""Before the first stage: every engine a job needs, checked at once.

A job that transcribes, replies and speaks for minutes must not then fail in its render stage
for something that was knowable at the start: a back end's settings, the avatar's files,
GPUs and world size, the Python its ranks (or talkgen itself) would import it in, or the GPU
memory of the whole placement. Each problem is one line, raised before any model loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from talkgen.memory import GpuPlan
    from talkgen.recipe import Recipe


def preflight(recipe: Recipe, engines: set[str], render: bool = True) -> list[GpuPlan]:
    """Check the engines of `engines` (stt, llm, tts, avatar) that the job will load; the GPU
    plan. render=False: the job stops before its render stage (a batch worker's look-ahead),
    so the avatar's own checks wait for the job's own run."""
    from talkgen.engines.registry import SECTIONS, checked
    from talkgen.memory import check_placement

    for kind in ("stt", "llm", "tts"):
        if kind in engines:
            checked(kind, getattr(recipe, SECTIONS[kind]))
    if "avatar" in engines and render:
        from talkgen.engines.avatar import check_avatar, traits_for

        traits_for(recipe.render)  # its settings and world size
    plan = check_placement(recipe, engines)
    if "avatar" in engines and render:
        check_avatar(recipe.render)  # its files and GPUs
        from talkgen.ranks.interpreter import check_rank_python, needs_probe

        if needs_probe(recipe.render):
            check_rank_python(recipe.render)  # the Python it will be imported in, asked from there
    return plan
