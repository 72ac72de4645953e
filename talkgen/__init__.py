"""talkgen: self-hosted talking-avatar video renderer.

From Python (the command line's `render` and `batch`, returning their reports):

    import talkgen

    report = talkgen.render("question.txt", "answer.mp4", say=True, overrides=["render.size=256"])
    batch = talkgen.batch(["questions/"], "videos/", workers=1)   # batch.report.json's content
    failed = [j for j in batch["jobs"] if j["status"] == "failed"]

Both raise talkgen.errors.TalkgenError (UsageError for a mistake in what was asked) with a
one-line message. Importing talkgen loads nothing heavy: every import is inside the calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from pathlib import Path

__version__ = "0.1.0"


def render(script: "str | Path", output: "str | Path", *, recipe: str = "cpu", overrides: Iterable[str] = (),
           say: bool = False, persona: str | None = None, portrait: "str | Path | None" = None,
           voice: "str | Path | None" = None, voice_text: str | None = None, size: int | None = None,
           job_dir: "str | Path | None" = None, force: Iterable[str] = (), from_stage: str | None = None,
           live: bool = False) -> dict:
    """Render one video, as `talkgen render`; return its report (also written beside the video).
    live: also the HLS playlist beside it, each chunk listed as soon as it is made (as --live)."""
    from pathlib import Path

    from talkgen.batching.jobs import build_recipe
    from talkgen.pipeline import RenderRequest, run

    rec = build_recipe(recipe, list(overrides), size, persona, Path(voice) if voice else None, voice_text)
    return run(RenderRequest(Path(script), Path(output), rec, Path(portrait) if portrait else None,
                             Path(job_dir) if job_dir else None, list(force), from_stage, say, live=live))


def batch(inputs: "Iterable[str | Path]", output: "str | Path", *, recipe: str = "cpu", overrides: Iterable[str] = (),
          say: bool = False, persona: str | None = None, portrait: "str | Path | None" = None,
          voice: "str | Path | None" = None, voice_text: str | None = None, size: int | None = None,
          workers: int | None = None, ray: str | None = None, force: Iterable[str] = (), from_stage: str | None = None,
          live: bool = False) -> dict:
    """Render many videos with the models loaded once, as `talkgen batch`; return batch.report.json's content.

    inputs: a folder, files, or one jobs.yaml. A job that fails is in the report with its
    reason (status "failed"); it raises only for a mistake in the batch itself.
    """
    from pathlib import Path

    from talkgen.batching import jobs
    from talkgen.batching import run as batches

    opts = jobs.Options(recipe=recipe, overrides=list(overrides), say=say, persona=persona,
                        portrait=Path(portrait) if portrait else None, voice=Path(voice) if voice else None,
                        voice_text=voice_text, size=size, force=list(force), from_stage=from_stage)
    specs, workers = batches.prepare([Path(p) for p in inputs], opts, workers, ray)
    out = Path(output)
    batches.check_out(out)
    return batches.run_batch(specs, out, workers, ray_address=ray, live=live)
