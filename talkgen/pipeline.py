"""The render job: decide which stages are stale, run them in order, report.

Stages read and write artifacts in the job directory; each is skipped when its cache
key (a hash of its inputs' content, its parameters and its engine's identity) still
matches and its outputs verify. A finished job re-run loads no model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from talkgen.errors import UsageError
from talkgen.job import Job, StageRecord, atomic_path, cache_key, sha256_file, sha256_text
from talkgen.recipe import Recipe
from talkgen.report import StageReport

STAGES = ["speak", "plan", "render", "assemble"]


@dataclass
class RenderRequest:
    script: Path
    output: Path
    recipe: Recipe
    portrait: Path | None = None
    job_dir: Path | None = None
    force: list[str] = field(default_factory=list)
    from_stage: str | None = None


@dataclass
class Outputs:
    video: Path
    srt: Path
    report: Path


def outputs_for(video: Path) -> Outputs:
    return Outputs(video=video, srt=video.with_suffix(".srt"), report=video.with_name(video.stem + ".report.json"))


def default_job_dir(output: Path) -> Path:
    """One job per output file, so changing a setting re-uses what it does not touch."""
    digest = hashlib.sha256(str(output.resolve()).encode()).hexdigest()[:10]
    return Path(".talkgen") / "jobs" / f"{output.stem}-{digest}"


def check_output(path: Path) -> None:
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"output folder {parent} does not exist: create it or choose another -o")
    if path.suffix.lower() != ".mp4":
        raise UsageError(f"output {path} must end in .mp4")
    if path.is_dir():
        raise UsageError(f"output {path} is a folder: name the .mp4 file to write")
    # Try a real write: permission bits say nothing about read-only mounts or /proc.
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".talkgen-write-test-"):
            pass
    except OSError:
        raise UsageError(f"output folder {parent} is not writable: choose another -o") from None


def stale_stages(force: list[str], from_stage: str | None) -> set[str]:
    for name in [*force, *([from_stage] if from_stage else [])]:
        if name not in STAGES:
            raise UsageError(f"unknown stage '{name}': stages are {', '.join(STAGES)}")
    stale = set(force)
    if from_stage:
        stale |= set(STAGES[STAGES.index(from_stage):])
    return stale


class Progress:
    """Callbacks the CLI gives the pipeline; the pipeline prints nothing itself."""

    def stage(self, name: str, total: float | None, unit: str) -> None: ...
    def advance(self, n: float = 1) -> None: ...
    def done(self, name: str, cache: str) -> None: ...


def run(req: RenderRequest, progress: Progress | None = None, text: str | None = None) -> dict:
    from talkgen import media, report
    from talkgen.text.script import read_script

    progress = progress or Progress()
    t_start = time.perf_counter()
    check_output(req.output)
    recipe = req.recipe
    stale = stale_stages(req.force, req.from_stage)
    text = text if text is not None else read_script(req.script)
    ffmpeg_version = media.require_ffmpeg()
    if req.portrait is None and recipe.render.portrait:
        req.portrait = Path(recipe.render.portrait)
    if req.portrait is not None:
        from talkgen.portrait import read_image

        read_image(req.portrait)  # unreadable or not an image: fail before any work
    out = outputs_for(req.output)
    job = Job(req.job_dir or default_job_dir(req.output))
    stages: list[StageReport] = []
    with job:
        # -- speak ----------------------------------------------------------------------
        from talkgen.engines.tts import tts_identity

        tts_id = tts_identity(recipe.tts)
        speak_key = cache_key(
            script=sha256_text(text), tts=tts_id, pauses=[recipe.tts.sentence_pause_s, recipe.tts.paragraph_pause_s],
            talkgen=_code_version(["text", "stages/speak.py"]),
        )
        portrait = None

        def need_portrait():
            nonlocal portrait
            if portrait is None:
                from talkgen.portrait import load_portrait

                portrait = load_portrait(req.portrait, recipe.render.size)
            return portrait

        t = time.perf_counter()
        if "speak" in stale or not job.is_fresh("speak", speak_key):
            # A portrait with no face should fail before minutes of speech synthesis.
            need_portrait()
            from talkgen.engines.tts import load_tts
            from talkgen.stages.speak import speak

            from talkgen.text.script import paragraphs, sentences

            tts = load_tts(recipe.tts)
            progress.stage("speak", sum(len(sentences(p)) for p in paragraphs(text)), "sentences")
            speak(
                text, tts, job.path("speech.wav"), job.path("alignment.json"),
                recipe.tts.sentence_pause_s, recipe.tts.paragraph_pause_s,
                progress=lambda done, total: progress.advance(1),
            )
            job.record("speak", StageRecord(
                key=speak_key, outputs=job.output_hashes(["speech.wav", "alignment.json"]),
                wall_s=time.perf_counter() - t, engine="piper",
            ))
            cache = "miss"
        else:
            cache = "hit"
        stages.append(StageReport("speak", cache, time.perf_counter() - t, "piper", tts_id.get("piper", ""), "cpu"))
        progress.done("speak", cache)

        from talkgen.speech import SpeechTrack

        track = SpeechTrack.load(job.path("speech.wav"), job.path("alignment.json"))
        speech_hashes = job.stages["speak"].outputs

        # -- plan -----------------------------------------------------------------------
        from talkgen.engines.avatar import avatar_traits

        traits = avatar_traits(recipe.render)
        max_chunk_s = min(recipe.render.max_chunk_s, traits["max_chunk_s"])
        plan_key = cache_key(
            speech=speech_hashes, fps=recipe.render.fps, max_chunk_s=max_chunk_s, min_chunk_s=recipe.render.min_chunk_s,
            frames_per_clip=traits["frames_per_clip"], talkgen=_code_version(["stages/plan.py"]),
        )
        t = time.perf_counter()
        if "plan" in stale or not job.is_fresh("plan", plan_key):
            from talkgen.job import write_json_atomic
            from talkgen.stages.plan import make_plan

            plan = make_plan(track, recipe.render.fps, max_chunk_s, recipe.render.min_chunk_s, traits["frames_per_clip"])
            write_json_atomic(job.path("plan.json"), plan)
            job.record("plan", StageRecord(key=plan_key, outputs=job.output_hashes(["plan.json"]), wall_s=time.perf_counter() - t, engine="plan"))
            cache = "miss"
        else:
            plan = json.loads(job.path("plan.json").read_text(encoding="utf-8"))
            cache = "hit"
        stages.append(StageReport("plan", cache, time.perf_counter() - t, "plan", "", "cpu", detail={"chunks": len(plan["chunks"])}))
        progress.done("plan", cache)

        # -- render ---------------------------------------------------------------------
        from talkgen.portrait import portrait_hash

        portrait_id = portrait_hash(req.portrait)
        render_key = cache_key(
            plan=job.stages["plan"].outputs, speech=speech_hashes, portrait=portrait_id,
            render={k: v for k, v in recipe.render.__dict__.items() if k not in ("max_chunk_s", "min_chunk_s")},
            engine=traits["identity"],
        )
        t = time.perf_counter()
        if "render" in stale:
            job.forget("render")
        if not job.is_fresh("render", render_key):
            from talkgen.engines.avatar import load_avatar
            from talkgen.stages.render import render_chunks

            engine = load_avatar(recipe.render, need_portrait())
            progress.stage("render", plan["total_frames"], "frames")
            rec = render_chunks(job, render_key, plan, engine, track, recipe.render.crf, recipe.render.preset, on_frames=progress.advance)
            rec.wall_s = time.perf_counter() - t
            job.record("render", rec)
            cache = "miss"
        else:
            cache = "hit"
        rec = job.stages["render"]
        stages.append(StageReport(
            "render", cache, time.perf_counter() - t, recipe.render.engine, traits["identity"].get("version", ""), "cpu",
            detail={"chunks": len(plan["chunks"]), "reused_chunks": rec.extra.get("reused_chunks", 0),
                    "fps_rendered": round(plan["total_frames"] / max(1e-9, time.perf_counter() - t), 1) if cache == "miss" else None},
        ))
        progress.done("render", cache)

        # -- assemble -------------------------------------------------------------------
        from talkgen.stages.render import chunk_name

        chunk_rels = [chunk_name(c["index"]) for c in plan["chunks"]]
        assemble_key = cache_key(
            chunks=[rec.outputs[r] for r in chunk_rels], speech=speech_hashes, ffmpeg=ffmpeg_version,
            talkgen=_code_version(["stages/assemble.py", "subtitles.py", "media.py"]),
        )
        t = time.perf_counter()
        if "assemble" in stale or not job.is_fresh("assemble", assemble_key):
            from talkgen.stages.assemble import assemble
            from talkgen.subtitles import write_srt

            progress.stage("assemble", None, "")
            write_srt(job.path("final.srt"), track.sentences, track.sample_rate)
            info = assemble(
                [job.path(r) for r in chunk_rels], job.path("speech.wav"), job.path("final.srt"),
                job.path("joined.mp4"), job.path("final.mp4"), job.path("concat.txt"), plan["total_frames"], plan["fps"],
            )
            job.path("joined.mp4").unlink(missing_ok=True)
            job.record("assemble", StageRecord(
                key=assemble_key, outputs=job.output_hashes(["final.mp4", "final.srt"]),
                wall_s=time.perf_counter() - t, engine="ffmpeg", extra={"output": info},
            ))
            cache = "miss"
        else:
            cache = "hit"
        info = job.stages["assemble"].extra["output"]
        _publish(job.path("final.mp4"), out.video, job.stages["assemble"].outputs["final.mp4"])
        _publish(job.path("final.srt"), out.srt, job.stages["assemble"].outputs["final.srt"])
        stages.append(StageReport("assemble", cache, time.perf_counter() - t, "ffmpeg", ffmpeg_version.split(" ")[2] if ffmpeg_version.count(" ") >= 2 else "", "cpu"))
        progress.done("assemble", cache)

        artifacts = {
            "job": str(job.root.resolve()),
            "speech": str(job.path("speech.wav").resolve()),
            "alignment": str(job.path("alignment.json").resolve()),
            "plan": str(job.path("plan.json").resolve()),
            "chunks": str(job.path("chunks").resolve()),
            "video": str(out.video.resolve()),
            "subtitles": str(out.srt.resolve()),
            "report": str(out.report.resolve()),
        }
        rep = report.build(stages, track.duration_s, time.perf_counter() - t_start, artifacts, info, recipe, gpus=0)
        rep["talkgen"] = metadata.version("talkgen")
        from talkgen.job import write_json_atomic

        write_json_atomic(out.report, rep)
        return rep


def _publish(src: Path, dst: Path, digest: str) -> None:
    """Copy a finished artifact to where the user asked, atomically, unless it is already there."""
    if dst.is_file() and sha256_file(dst) == digest:
        return
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _code_version(rels: list[str]) -> str:
    """Hash of the talkgen source files a stage depends on: edit them and it re-runs."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for rel in rels:
        p = root / rel
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]
