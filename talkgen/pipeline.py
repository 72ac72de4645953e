"""A render job: an input and an output file around the sequencer (talkgen.sequencer).

What is the render's own: checking the input and the output before any work, the job's
folder, publishing the video and subtitles where they were asked for, the report, and
`talkgen check` on the video. `talkgen render`, each batch job and each chat turn are one
of these; engines come from an engine holder (talkgen.holder) that a batch worker or a chat
keeps across jobs, and `talkgen render` makes for its one job.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from talkgen.errors import TalkgenError, UsageError
from talkgen.feeds import Feed
from talkgen.holder import Engines
from talkgen.job import Job, atomic_path, code_hash, sha256_file, write_json_atomic
from talkgen.recipe import Recipe
from talkgen.sequencer import kept, overlaps, roles_needed, run_stages, stale_stages
from talkgen.stages import Context, Progress, Source

__all__ = ["Outputs", "Progress", "RenderRequest", "default_job_dir", "kept", "outputs_for", "run"]


@dataclass
class RenderRequest:
    script: Path | None  # a script (.txt) or a recording; None with `text`
    output: Path
    recipe: Recipe
    portrait: Path | None = None
    job_dir: Path | None = None
    force: list[str] = field(default_factory=list)
    from_stage: str | None = None
    say: bool = False
    # Stop after this stage: a batch worker's look-ahead runs its next job until its speech
    # while this one's picture renders. None runs the whole job.
    until: str | None = None
    # Stages an earlier run of this job in this process made (the look-ahead), with their times.
    made_earlier: dict[str, float] = field(default_factory=dict)
    text: str | None = None  # the script itself, given rather than read from a file (a chat turn's reply)
    text_feed: Feed | None = None  # or what the voice says of it as it is written: (paragraph, piece, ends a sentence), then closed
    origin: str = ""  # the key of what wrote that text (stages/__init__.py Source.origin)
    check: bool = True  # run `talkgen check` on the video (a chat turn does not wait for it)
    live: bool = False  # watched while it is made (--live, a chat turn): its stages overlap wherever memory allows
    # The conversation before this job's questions (a served session's earlier turns, as
    # {"role", "content"} messages): the reply goes on from it.
    history: list[dict] = field(default_factory=list)


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


def resident_roles(recipe: Recipe) -> set[str]:
    """What a render keeps loaded to the end of its job: the recipe's placement.resident."""
    keep = set(recipe.placement.resident)
    if "avatar" in keep:
        keep.add("ranks")
    if "stt" in keep:
        keep.add("vad")
    return keep


def source_of(req: RenderRequest) -> Source:
    """What the job starts from, read and checked before any work."""
    if req.text is not None or req.text_feed is not None:
        return Source("script", None, req.text, req.say, req.origin, req.history)
    from talkgen.inputs import input_kind

    kind = input_kind(req.script)
    if kind == "audio":
        return Source("audio", req.script, "", req.say, history=req.history)
    from talkgen.text.script import read_script

    return Source("script", req.script, read_script(req.script), req.say, history=req.history)  # any file with an audio stream is a recording


def engines_needed(recipe: Recipe, source: Source, until: str | None = None) -> set[str]:
    """The engines this job will load (if its stages are not cached)."""
    roles = roles_needed(source, until)
    if "tts" in roles and recipe.tts.engine == "f5-tts":
        from talkgen.engines.f5_tts import voice_text

        if not voice_text(recipe.tts):
            roles.add("stt")  # to transcribe the voice recording
    return roles


def run(req: RenderRequest, progress: Progress | None = None, engines: Engines | None = None,
        group_root: Path | None = None) -> dict:
    """One job. `engines` is the worker's holder (a batch, a chat), else one made for this job and
    closed after it; `group_root` is where a rank group it starts keeps its files.
    With `req.until` the job stops after that stage and returns {"stages": [StageReport...]}."""
    progress = progress or Progress()
    if engines is not None:
        from talkgen.placement import trim_heap

        try:
            return _run(req, progress, engines, group_root)
        finally:
            trim_heap()  # a worker runs job after job: what this one freed goes back
    engines = Engines(keep=resident_roles(req.recipe), on_status=progress.note)
    try:
        return _run(req, progress, engines, group_root)
    finally:
        engines.close()


def _run(req: RenderRequest, progress: Progress, engines: Engines, group_root: Path | None) -> dict:
    from talkgen import media, report
    from talkgen.memory import describe
    from talkgen.placement import gpus_held
    from talkgen.preflight import preflight

    t_start = time.perf_counter()
    check_output(req.output)
    recipe = req.recipe
    stale = stale_stages(req.force, req.from_stage)
    source = source_of(req)
    ffmpeg_version = media.require_ffmpeg()
    portrait = req.portrait or (Path(recipe.render.portrait) if recipe.render.portrait else None)
    if portrait is not None:
        from talkgen.portrait import read_image

        read_image(portrait)  # unreadable or not an image: fail before any work
    gpu_plan = preflight(recipe, engines_needed(recipe, source), render=req.until is None)  # every engine, before any stage
    with Job(req.job_dir or default_job_dir(req.output)) as job:
        ctx = Context(job, recipe, source, engines, progress, portrait, group_root, stale, ffmpeg=ffmpeg_version)
        if req.text_feed is not None:
            ctx.feeds.text = req.text_feed
        out = outputs_for(req.output)
        streams: list = []  # the live stream, started again if the job is (sequencer.Restart)

        def watch(feeds) -> None:
            if not req.live or req.until is not None:
                return
            from talkgen.live import LiveStream, playlist_for

            for old in streams:
                old.stop()
                old.join()
            streams[:] = [LiveStream(playlist_for(out.video), job.root, recipe.render.fps, recipe.render.max_chunk_s,
                                     progress.segment, started=t_start)]
            streams[0].start(feeds.chunks, feeds.finished, feeds.speech)

        try:
            outcome = run_stages(ctx, req.until, overlap=overlaps(recipe, engines_needed(recipe, source, req.until), req.live),
                                 made_earlier=req.made_earlier, started=t_start, on_feeds=watch)
        except BaseException as exc:
            ctx.feeds.fail(exc)  # the live stream stops where it got to
            for stream in streams:
                stream.stop()
                stream.join()
            raise
        for stream in streams:
            stream.join()
        if req.until is not None:
            return {"stages": outcome.reports}
        publish(job.path("final.mp4"), out.video, job.stages["assemble"].outputs["final.mp4"])
        publish(job.path("final.srt"), out.srt, job.stages["assemble"].outputs["final.srt"])

        from talkgen.chunks import CHUNKS

        artifacts = {name: str(job.path(rel).resolve()) for name, rel in (
            ("job", "."), ("transcript", "transcript.json"), ("reply", "reply.json"), ("speech", "speech.wav"),
            ("alignment", "alignment.json"), ("plan", "plan.json"), ("chunks", CHUNKS),
        ) if job.path(rel).exists()}
        artifacts.update(video=str(out.video.resolve()), subtitles=str(out.srt.resolve()), report=str(out.report.resolve()))
        if streams:
            artifacts["playlist"] = str(streams[0].playlist.resolve())
        output = dict(ctx.values["assembled"])
        seams = output.pop("seams", None)
        track = ctx.feeds.speech.wait()
        rep = report.build(outcome.reports, track.duration_s, time.perf_counter() - t_start, artifacts, output, recipe,
                           gpus=gpus_held(recipe), first_chunk_s=outcome.first_chunk_s,
                           overlapped_s=outcome.wall_s if outcome.overlapped else None)
        rep["talkgen"] = metadata.version("talkgen")
        rep["mode"] = f"{source.kind}, {'say' if source.say else 'reply'}"
        rep["seams"] = seams
        rep["placement"] = [describe(p) for p in gpu_plan]
        if not source.say:
            rep["conversation"] = [{"question": t["question"], "reply": t["reply"]} for t in ctx.values["replies"]["turns"]]
        if req.check:
            rep["check"] = _check(job, out.video, job.stages["assemble"].outputs["final.mp4"])
        write_json_atomic(out.report, rep)
        if req.check and not rep["check"]["ok"]:
            reasons = "; ".join(f"{f['name']}: {f['detail']}" for f in rep["check"]["findings"] if not f["ok"])
            raise TalkgenError(f"{out.video} was written but fails talkgen check ({reasons}); see {out.report}")
        return rep


def _check(job: Job, video: Path, digest: str) -> dict:
    """talkgen check on the published video, kept in the job so a finished job re-run does not measure again."""
    from talkgen.check import check_video, job_expects

    stored = job.path("check.json")
    code = code_hash("talkgen.check", "talkgen.sync")
    expects = job_expects(job.root)  # a back end that changes what it claims is checked again
    try:
        old = json.loads(stored.read_text(encoding="utf-8"))
        if old.get("video_sha256") == digest and old.get("code") == code and old.get("expects") == expects:
            return old["result"]
    except (OSError, ValueError, AttributeError):
        pass
    result = check_video(video, job.root).to_dict()
    write_json_atomic(stored, {"video_sha256": digest, "code": code, "expects": expects, "result": result})
    return result


def publish(src: Path, dst: Path, digest: str) -> None:
    """Copy a finished artifact to where the user asked, atomically, unless it is already there."""
    if dst.is_file() and sha256_file(dst) == digest:
        return
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
