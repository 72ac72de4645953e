"""The render job: decide which stages are stale, run them in order, report.

Stages read and write artifacts in the job directory; each is skipped when its cache
key (a hash of its inputs' content, its parameters, its engine's identity and the source
of the code that makes its artifact, talkgen.job.code_hash) still matches and its outputs
verify. A finished job re-run loads no model. Engines come from
an engine holder (talkgen.holder): a batch worker hands its own to job after job, so each
model is loaded once; `talkgen render` is one job on a holder of its own.

    question.wav -> transcribe -> reply -> speak -> plan -> render -> assemble
    script.txt   ->               reply -> speak -> ...       (--say skips reply)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from talkgen.errors import TalkgenError, UsageError
from talkgen.job import Job, StageRecord, atomic_path, cache_key, code_hash, sha256_file, sha256_text, write_json_atomic
from talkgen.holder import Engines
from talkgen.placement import release
from talkgen.recipe import Recipe
from talkgen.report import StageReport

if TYPE_CHECKING:
    from talkgen.chunks import Plan
    from talkgen.engines.avatar import AvatarTraits
    from talkgen.portrait import Portrait
    from talkgen.speech import SpeechTrack

STAGES = ["transcribe", "reply", "speak", "plan", "render", "assemble"]
# The stages a look-ahead may run: every one before the picture. Their engines (speech to text,
# LLM, voice) are not the avatar's, so one job's front can run while another job renders.
FRONT = ("transcribe", "reply", "speak")


def _engine_code(kind: str, engine: str) -> str:
    """The module of a speech, text or voice back end (from the engine registry): its code joins
    the stage's own (MADE_BY) in the key of the stage it runs. The avatar back ends put their
    code in their identity."""
    from talkgen.engines.registry import module_of

    return module_of(kind, engine) or engine


@dataclass
class RenderRequest:
    script: Path  # a script (.txt) or a recording
    output: Path
    recipe: Recipe
    portrait: Path | None = None
    job_dir: Path | None = None
    force: list[str] = field(default_factory=list)
    from_stage: str | None = None
    say: bool = False
    # Stop after this stage (a batch worker's look-ahead: the text and voice of its next job,
    # made while this one's picture renders); None runs the whole job.
    until: str | None = None
    # What a look-ahead already made of this job: those stages are reported as done "ahead".
    ahead: list[StageReport] = field(default_factory=list)
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


def kept(job_root: Path) -> str:
    """What a stopped render leaves for the next run, in words: "kept the speech, the plan and 3 of 7 chunks in JOB"."""
    from talkgen.chunks import Plan, finished_count

    try:
        stages = json.loads((job_root / "manifest.json").read_text(encoding="utf-8"))["stages"]
    except (OSError, ValueError, KeyError, TypeError):
        stages = {}
    words = {"transcribe": "the transcript", "reply": "the replies", "speak": "the speech", "plan": "the plan",
             "render": "every chunk", "assemble": "the video"}
    done = [words[name] for name in STAGES if isinstance(stages.get(name), dict) and stages[name].get("complete", True)]
    if "render" not in stages:
        try:
            total = len(Plan.load(job_root / "plan.json").chunks) if "plan" in stages else 0
        except (OSError, ValueError, KeyError, TypeError):
            total = 0
        finished = finished_count(job_root)
        if total and finished:
            done.append(f"{min(finished, total)} of {total} chunks")
    if not done:
        return f"nothing was finished yet (job {job_root})"
    listed = done[0] if len(done) == 1 else ", ".join(done[:-1]) + " and " + done[-1]
    return f"kept {listed} in {job_root}"


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
    def note(self, message: str) -> None: ...
    def turn(self, index: int, question: str) -> None: ...
    def text(self, chunk: str) -> None: ...


@dataclass
class Run:
    """One execution of a job: the job, its settings, and what has been reported so far."""

    job: Job
    recipe: Recipe
    stale: set[str]
    progress: Progress
    engines: Engines
    group_root: Path | None = None  # where the avatar's rank group lives: the job itself for a render
    reports: list[StageReport] = field(default_factory=list)
    ahead: dict[str, StageReport] = field(default_factory=dict)  # stages a look-ahead made, by name

    def stage(self, name: str, key: str, work: Callable[[], StageRecord], engine: str, version: str = "",
              roles: tuple[str, ...] = ()) -> StageRecord:
        """Run `work` unless the stage is fresh; record and report it either way."""
        t = time.perf_counter()
        if name in self.stale and name not in self.ahead:
            self.job.forget(name)
        made_ahead = None
        if self.job.is_fresh(name, key):
            cache = "hit"
            before = self.ahead.get(name)
            if before is not None and before.cache == "miss":
                cache, made_ahead = "ahead", before.wall_s  # made for this job by the worker's look-ahead
        else:
            try:
                rec = work()
            finally:
                # The stage's engines go unless the holder keeps them: their memory (and GPU) goes to the next one.
                dropped = [self.engines.settle(role) for role in roles]
                release(collect=any(dropped))
            rec.key, rec.wall_s, rec.complete = key, time.perf_counter() - t, True
            rec.engine = rec.engine or engine
            self.job.record(name, rec)
            cache = "miss"
        rec = self.job.stages[name]
        detail = {k: v for k, v in rec.extra.items() if k != "output"}
        wall = made_ahead if made_ahead is not None else time.perf_counter() - t
        self.reports.append(StageReport(name, cache, wall, engine, version, rec.device, detail=detail))
        self.progress.done(name, cache)
        return rec


def resident_roles(recipe: Recipe) -> set[str]:
    """What a render keeps loaded to the end of its job: the recipe's placement.resident."""
    keep = set(recipe.placement.resident)
    if "avatar" in keep:
        keep.add("ranks")
    if "stt" in keep:
        keep.add("vad")
    return keep


def run(req: RenderRequest, progress: Progress | None = None, engines: Engines | None = None,
        group_root: Path | None = None) -> dict:
    """One job. `engines` is the worker's holder (a batch), else one made for this job and
    closed after it; `group_root` is where a rank group it starts keeps its files.
    With `req.until` the job stops after that stage and returns {"stages": [StageReport...]}."""
    if engines is not None:
        return _run(req, progress or Progress(), engines, group_root)
    engines = Engines(keep=resident_roles(req.recipe))
    try:
        return _run(req, progress or Progress(), engines, group_root)
    finally:
        engines.close()


def _run(req: RenderRequest, progress: Progress, engines: Engines, group_root: Path | None) -> dict:
    from talkgen import media, report
    from talkgen.inputs import input_kind

    t_start = time.perf_counter()
    check_output(req.output)
    if req.until is not None and req.until not in FRONT:
        raise ValueError(f"a job can stop early only after one of {FRONT}, not {req.until}")
    recipe = req.recipe
    stale = stale_stages(req.force, req.from_stage)
    kind = input_kind(req.script)
    script_text = _read_script(req.script) if kind == "script" else None
    ffmpeg_version = media.require_ffmpeg()
    if req.portrait is None and recipe.render.portrait:
        req.portrait = Path(recipe.render.portrait)
    if req.portrait is not None:
        from talkgen.portrait import read_image

        read_image(req.portrait)  # unreadable or not an image: fail before any work
    out = outputs_for(req.output)
    from talkgen.memory import check_placement, describe

    gpu_plan = check_placement(recipe, engines_needed(recipe, kind, req.say))  # before any model loads
    from talkgen.placement import runs_in_ranks

    if recipe.render.python and runs_in_ranks(recipe.render) and req.until is None:
        from talkgen.ranks.interpreter import check_rank_python

        check_rank_python(recipe.render)  # the back end's own environment: before anything loads
    with Job(req.job_dir or default_job_dir(req.output)) as job:
        if req.until is None:
            engines.on_status = progress.note  # a look-ahead's notes would land in the running job's view
        r = Run(job, recipe, stale, progress, engines, group_root, ahead={s.name: s for s in req.ahead})
        portrait = _PortraitOnce(req.portrait, recipe.render.size)
        if kind == "audio":
            transcript = _transcribe(r, req.script, portrait)
            turns = [transcript["text"]]
            spoken_source = transcript["text"]
        else:
            from talkgen.text.script import paragraphs

            turns = paragraphs(script_text)
            spoken_source = script_text
        if req.until == "transcribe":
            return {"stages": r.reports}
        if req.say:
            speech_text = spoken_source
        else:
            replies = _reply(r, turns, portrait, req.history)
            speech_text = "\n\n".join(t["reply"] for t in replies["turns"])
        if req.until == "reply":
            return {"stages": r.reports}
        track = _speak(r, speech_text, portrait)
        if req.until == "speak":
            return {"stages": r.reports}
        plan, traits = _plan(r, track)
        render_rec = _render(r, req.portrait, portrait, plan, traits, track)
        info = _assemble(r, plan, render_rec, track, ffmpeg_version)
        _publish(job.path("final.mp4"), out.video, job.stages["assemble"].outputs["final.mp4"])
        _publish(job.path("final.srt"), out.srt, job.stages["assemble"].outputs["final.srt"])

        from talkgen.chunks import CHUNKS

        artifacts = {name: str(job.path(rel).resolve()) for name, rel in (
            ("job", "."), ("transcript", "transcript.json"), ("reply", "reply.json"), ("speech", "speech.wav"),
            ("alignment", "alignment.json"), ("plan", "plan.json"), ("chunks", CHUNKS),
        ) if job.path(rel).exists()}
        artifacts.update(video=str(out.video.resolve()), subtitles=str(out.srt.resolve()), report=str(out.report.resolve()))
        output = dict(info)
        seams = output.pop("seams", None)
        from talkgen.placement import gpus_held

        gpus = gpus_held(recipe)
        rep = report.build(r.reports, track.duration_s, time.perf_counter() - t_start, artifacts, output, recipe, gpus=gpus)
        rep["talkgen"] = metadata.version("talkgen")
        rep["mode"] = f"{kind}, {'say' if req.say else 'reply'}"
        rep["seams"] = seams
        rep["placement"] = [describe(p) for p in gpu_plan]
        if not req.say:
            rep["conversation"] = [{"question": t["question"], "reply": t["reply"]} for t in replies["turns"]]
        rep["check"] = _check(job, out.video, job.stages["assemble"].outputs["final.mp4"])
        write_json_atomic(out.report, rep)
        if not rep["check"]["ok"]:
            reasons = "; ".join(f"{f['name']}: {f['detail']}" for f in rep["check"]["findings"] if not f["ok"])
            raise TalkgenError(f"{out.video} was written but fails talkgen check ({reasons}); see {out.report}")
        return rep


def engines_needed(recipe: Recipe, kind: str, say: bool) -> set[str]:
    """The engines this job will load (if its stages are not cached)."""
    engines = {"tts", "avatar"}
    if kind == "audio":
        engines.add("stt")
    if not say:
        engines.add("llm")
    if recipe.tts.engine == "f5-tts":
        from talkgen.engines.f5_tts import voice_text

        if not voice_text(recipe.tts):
            engines.add("stt")  # to transcribe the voice recording
    return engines


def _read_script(path: Path) -> str:
    from talkgen.text.script import read_script

    return read_script(path)  # input_kind has already taken any file with an audio stream as a recording


class _PortraitOnce:
    """Loads (and face-checks) the portrait at most once, and only if some stage needs it."""

    def __init__(self, path: Path | None, size: int) -> None:
        self.path, self.size, self._portrait = path, size, None

    def get(self) -> Portrait:
        if self._portrait is None:
            from talkgen.portrait import load_portrait

            self._portrait = load_portrait(self.path, self.size)
        return self._portrait


# -- stages ------------------------------------------------------------------------------

def _transcribe(r: Run, audio: Path, portrait: _PortraitOnce) -> dict:
    from talkgen import media
    from talkgen.engines.stt import stt_identity
    from talkgen.stages import transcribe as stage

    c = r.recipe.stt
    ident = stt_identity(c)
    key = cache_key(audio=sha256_file(audio), stt=ident, piece_s=c.piece_s, vad=c.vad_threshold,
                    talkgen=code_hash(*stage.MADE_BY, _engine_code("stt", c.engine)))

    def work() -> StageRecord:
        duration = media.audio_duration(audio)
        portrait.get()  # a portrait with no face should fail before any model work
        stt = r.engines.stt(c, r.recipe.name)
        r.progress.stage("transcribe", round(duration, 1), "s of audio")
        result = stage.transcribe(audio, stt, r.engines.vad(), r.job.path("transcript.json"), c.piece_s, c.vad_threshold,
                                  r.progress.advance)
        return StageRecord(key="", device=c.device, outputs=r.job.output_hashes(["transcript.json"]),
                           extra={"audio_s": round(duration, 3), "pieces": result["pieces"], "language": result["language"]})

    r.stage("transcribe", key, work, c.engine, ident.get("faster_whisper") or ident.get("openai_whisper", ""), roles=("stt", "vad"))
    return json.loads(r.job.path("transcript.json").read_text(encoding="utf-8"))


def _reply(r: Run, turns: list[str], portrait: _PortraitOnce, history: list[dict]) -> dict:
    from talkgen.engines.llm import llm_identity
    from talkgen.stages import reply as stage

    c = r.recipe.llm
    ident = llm_identity(c)
    earlier = {"history": sha256_text(json.dumps(history, sort_keys=True))} if history else {}
    key = cache_key(turns=[sha256_text(t) for t in turns], llm=ident, settings=c.__dict__, **earlier,
                    talkgen=code_hash(*stage.MADE_BY, _engine_code("llm", c.engine)))

    def work() -> StageRecord:
        portrait.get()
        loads = sum(r.engines.loads.values())
        llm = r.engines.llm(c, r.recipe.name)
        loaded = sum(r.engines.loads.values()) > loads  # else a worker's LLM, loaded for an earlier job
        result = stage.reply(turns, llm, c, r.job.path("reply.json"), on_text=r.progress.text, note=r.progress.note,
                             on_turn=r.progress.turn, history=history)
        tokens = sum(t["tokens"] for t in result["turns"])
        gen_s = sum(t["seconds"] for t in result["turns"])
        return StageRecord(key="", device=c.device, outputs=r.job.output_hashes(["reply.json"]), extra={
            "turns": len(turns), "import_s": round(llm.import_s if loaded else 0.0, 3),
            "convert_s": round(llm.convert_s if loaded else 0.0, 3), "load_s": round(llm.load_s if loaded else 0.0, 3),
            "loaded": loaded,
            "tokens": tokens, "tokens_per_s": round(tokens / gen_s, 2) if gen_s else 0.0,
        })

    r.stage("reply", key, work, "transformers", ident["transformers"], roles=("llm",))
    return json.loads(r.job.path("reply.json").read_text(encoding="utf-8"))


def _speak(r: Run, text: str, portrait: _PortraitOnce) -> SpeechTrack:
    from talkgen.engines.tts import tts_identity
    from talkgen.speech import SpeechTrack
    from talkgen.stages import speak as stage

    c = r.recipe.tts
    ident = tts_identity(c)
    extra = {}
    if c.engine == "f5-tts":
        from talkgen.engines import f5_tts
        from talkgen.engines.stt import stt_identity

        if not f5_tts.voice_text(c):  # the transcript talkgen makes depends on the STT engine
            extra["voice_stt"] = stt_identity(r.recipe.stt)
    key = cache_key(script=sha256_text(text), tts=ident, pauses=[c.sentence_pause_s, c.paragraph_pause_s], **extra,
                    talkgen=code_hash(*stage.MADE_BY, _engine_code("tts", c.engine)))

    def work() -> StageRecord:
        from talkgen.text.script import paragraphs, sentences

        portrait.get()  # a portrait with no face should fail before minutes of speech synthesis
        tts = r.engines.tts(c, r.recipe.stt, r.recipe.name, fresh=True)  # the same speech as a render of its own
        reference = getattr(tts, "reference", None)
        r.progress.stage("speak", sum(len(sentences(p)) for p in paragraphs(text)), "sentences")
        stage.speak(text, tts, r.job.path("speech.wav"), r.job.path("alignment.json"), c.sentence_pause_s, c.paragraph_pause_s,
                    progress=lambda done, total: r.progress.advance(1))
        return StageRecord(key="", outputs=r.job.output_hashes(["speech.wav", "alignment.json"]), device=c.device,
                           extra={"voice_text": reference.text} if reference else {})

    r.stage("speak", key, work, c.engine, ident.get("piper") or ident.get("f5_tts", ""), roles=("tts",))
    return SpeechTrack.load(r.job.path("speech.wav"), r.job.path("alignment.json"))


def _plan(r: Run, track: SpeechTrack) -> tuple[Plan, AvatarTraits]:
    from talkgen.chunks import Plan
    from talkgen.engines.avatar import traits_for
    from talkgen.stages import plan as stage

    c = r.recipe.render
    traits = traits_for(c)
    max_chunk_s = min(c.max_chunk_s, traits.max_chunk_s)
    key = cache_key(speech=r.job.stages["speak"].outputs, fps=c.fps, max_chunk_s=max_chunk_s, min_chunk_s=c.min_chunk_s,
                    frames_per_clip=traits.frames_per_clip, lead_frames=traits.lead_frames, talkgen=code_hash(*stage.MADE_BY))

    def work() -> StageRecord:
        plan = stage.make_plan(track, c.fps, max_chunk_s, c.min_chunk_s, traits.frames_per_clip, traits.lead_frames)
        write_json_atomic(r.job.path("plan.json"), plan.to_dict())
        return StageRecord(key="", outputs=r.job.output_hashes(["plan.json"]), extra={"chunks": len(plan.chunks)})

    r.stage("plan", key, work, "plan")
    return Plan.load(r.job.path("plan.json")), traits


def _render(r: Run, portrait_path: Path | None, portrait: _PortraitOnce, plan: Plan, traits: AvatarTraits, track: SpeechTrack) -> StageRecord:
    from talkgen.placement import runs_in_ranks
    from talkgen.portrait import portrait_hash
    from talkgen.stages import render as stage

    c = r.recipe.render
    key = stage.render_key(c, traits.identity, plan=r.job.stages["plan"].outputs, speech=r.job.stages["speak"].outputs,
                           portrait=portrait_hash(portrait_path))

    def work() -> StageRecord:
        from talkgen.chunks import chunk_dir, clear_chunks, clear_stale_chunks, next_chunk
        from talkgen.ranks.timing import rank_timings

        if "render" in r.stale:
            clear_chunks(r.job.root)  # redo on purpose: finished chunks too
        t = time.perf_counter()
        r.progress.stage("render", plan.total_frames, "frames")
        if runs_in_ranks(c):
            from talkgen.engines.avatar import check_avatar

            check_avatar(c)  # missing files or GPUs fail here, in one line, not in every rank
            clear_stale_chunks(r.job.root, key)
            _, _, reused = next_chunk(r.job.root, plan, key)
            r.progress.advance(plan.frames_before(reused))
            request = stage.rank_request(r.recipe, portrait.get(), r.job.root, key)  # no face: fails here
            # The worker's rank group, launched with its first job and kept up for the next.
            group = r.engines.ranks(c, r.group_root or r.job.root)
            handed = group.render(r.job.root, request, plan, skip=set(range(reused)),
                                  on_chunk=lambda ch: r.progress.advance(ch.frames))
            rec = stage.collect(r.job, key, plan, reused)
            rec.extra.update(rank_timings(r.job.root, c.nproc, handed, rec.extra["encode_wait_s"]))
            rec.extra.update(group_launches=r.engines.launches, group_job=group.jobs)
        else:
            loading = time.perf_counter()
            engine = r.engines.avatar(c, portrait.get(), state_dir=chunk_dir(r.job.root))
            load_s = time.perf_counter() - loading
            rec = stage.render_chunks(r.job, key, plan, engine, track, c.crf, c.preset, on_frames=r.progress.advance)
            rec.extra.update(startup_s=round(load_s, 3), load_s=round(load_s, 3))
            rec.extra.update(python=sys.executable, torch=sys.modules["torch"].__version__ if "torch" in sys.modules else "")
        rendered = plan.total_frames - plan.frames_before(rec.extra.get("reused_chunks", 0))
        wall = max(1e-9, time.perf_counter() - t)
        rec.extra["fps_rendered"] = round(rendered / wall, 1)
        # Everything but the back end's own frame making: start-up, broadcasts, encoder waits, teardown.
        rec.extra["overhead_ratio"] = round(max(0.0, wall - rec.extra["backend_compute_s"]) / wall, 4)
        rec.extra["ranks"] = c.nproc
        rec.extra["check_expects"] = traits.check  # what talkgen check may expect of this back end's video
        return rec

    return r.stage("render", key, work, c.engine, traits.identity.get("version", ""), roles=("avatar", "ranks"))


def _assemble(r: Run, plan: Plan, render_rec: StageRecord, track: SpeechTrack, ffmpeg_version: str) -> dict:
    from talkgen import media
    from talkgen.chunks import chunk_name
    from talkgen.stages import assemble as stage

    rels = [chunk_name(ch.index) for ch in plan.chunks]
    key = cache_key(chunks=[render_rec.outputs[rel] for rel in rels], speech=r.job.stages["speak"].outputs,
                    ffmpeg=ffmpeg_version, encoder=media.FINAL_AUDIO, talkgen=code_hash(*stage.MADE_BY))

    def work() -> StageRecord:
        from talkgen.subtitles import write_srt

        job = r.job
        r.progress.stage("assemble", None, "")
        write_srt(job.path("final.srt"), track.sentences, track.sample_rate)
        info = stage.assemble([job.path(rel) for rel in rels], job.path("speech.wav"), job.path("final.srt"), job.path("joined.mp4"),
                              job.path("final.mp4"), job.path("concat.txt"), plan.total_frames, plan.fps, plan.seams())
        job.path("joined.mp4").unlink(missing_ok=True)
        return StageRecord(key="", outputs=job.output_hashes(["final.mp4", "final.srt"]), extra={"output": info})

    parts = ffmpeg_version.split(" ")
    rec = r.stage("assemble", key, work, "ffmpeg", parts[2] if len(parts) > 2 else "")
    return rec.extra["output"]


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


def _publish(src: Path, dst: Path, digest: str) -> None:
    """Copy a finished artifact to where the user asked, atomically, unless it is already there."""
    if dst.is_file() and sha256_file(dst) == digest:
        return
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)

