"""What a batch is made of: jobs from a folder, from files, or from a jobs.yaml.

Everything here is checked before any job runs, and any mistake is a UsageError (exit 2):
a jobs file that does not parse, an unknown key, an input that does not exist, two jobs
with one name, an override the recipe does not have. What only rendering can tell (a
script with no words, a portrait with no face) fails that job alone, later.

The recipe of each job is built here the same way for `talkgen render`: the recipe, then
the command line's overrides, then the job's own, then --size, --persona and --voice.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from talkgen.errors import UsageError
from talkgen.inputs import AUDIO_SUFFIXES
from talkgen.recipe import Recipe

SCRIPT_SUFFIXES = {".txt"}
JOB_KEYS = ("input", "name", "portrait", "voice", "voice_text", "persona", "say", "overrides")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Options:
    """render's options, applied to every job (a job's own settings win)."""

    recipe: str = "cpu"
    overrides: list[str] = field(default_factory=list)
    say: bool = False
    persona: str | None = None
    portrait: Path | None = None
    voice: Path | None = None
    voice_text: str | None = None
    size: int | None = None
    force: list[str] = field(default_factory=list)
    from_stage: str | None = None


@dataclass
class JobSpec:
    """One job as a worker gets it (plain data: it crosses to worker processes and Ray actors)."""

    name: str
    input: str  # absolute path of the script or recording
    say: bool
    recipe: dict  # Recipe.to_dict(), every override applied
    portrait: str | None = None
    force: list[str] = field(default_factory=list)
    from_stage: str | None = None
    # The conversation before this job's questions ({"role", "content"} messages): a served
    # session's earlier turns, which its reply goes on from. A batch's jobs have none.
    history: list[dict] = field(default_factory=list)
    # Also write the live stream (HLS) while it is made, its stages overlapping: a served job
    # is watched as it renders. The video is the same either way.
    live: bool = False

    def digest(self) -> str:
        """What the job is: a finished job is skipped on a re-run only if this has not changed."""
        data = asdict(self)
        del data["live"]  # how it is watched, not what it makes
        if not data["history"]:
            del data["history"]  # so a batch job's digest is what it was before jobs had a history
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_recipe(self) -> Recipe:
        from talkgen.recipe import recipe_from_dict

        return recipe_from_dict(self.recipe)


def build_recipe(recipe: str, overrides: list[str], size: int | None = None, persona: str | None = None,
                 voice: Path | None = None, voice_text: str | None = None) -> Recipe:
    """A job's recipe, as `talkgen render` builds it from its command line."""
    from talkgen.recipe import load_recipe

    items = list(overrides)
    if size is not None:
        if not 64 <= size <= 4096 or size % 2:
            raise UsageError(f"--size {size} must be an even number of pixels between 64 and 4096")
        items.append(f"render.size={size}")
    rec = load_recipe(recipe, items)
    if rec.render.size % 2 or not 64 <= rec.render.size <= 4096:
        raise UsageError(f"render.size={rec.render.size} must be an even number of pixels between 64 and 4096")
    if persona is not None:
        if not persona.strip():
            raise UsageError("--persona is empty: describe who the avatar is, e.g. --persona \"a patient physics teacher\"")
        rec.llm.persona = persona
    set_voice(rec, voice, voice_text)
    return rec


def set_voice(rec: Recipe, voice: Path | None, voice_text: str | None) -> None:
    if voice is None and voice_text is None:
        return
    if rec.tts.engine != "f5-tts":
        raise UsageError(f"--voice clones a voice with F5-TTS, and recipe '{rec.name}' speaks with {rec.tts.engine}: "
                         "use --recipe gpu-1x (or add tts.engine=f5-tts)")
    if voice is not None:
        if not voice.is_file():
            raise UsageError(f"--voice {voice} does not exist: give a recording of 2-15 s of clean speech")
        rec.tts.voice = str(voice.resolve())
        rec.tts.voice_text = ""  # a new recording: the recipe's transcript belongs to its own voice
    if voice_text is not None:
        if not voice_text.strip():
            raise UsageError("--voice-text is empty: write what the --voice recording says, or leave it out to transcribe it")
        rec.tts.voice_text = voice_text.strip()


def is_input(path: Path) -> bool:
    """A file a folder batch picks up: a script or a recording."""
    suffix = path.suffix.lower()
    return path.is_file() and not path.name.startswith(".") and (suffix in SCRIPT_SUFFIXES or suffix in AUDIO_SUFFIXES)


def read_jobs(inputs: list[Path], opts: Options) -> list[JobSpec]:
    """The batch's jobs, in order; a UsageError for anything wrong with them."""
    if not inputs:
        raise UsageError("say what to render: a folder, files, or a jobs.yaml")
    if any(p.suffix.lower() in (".yaml", ".yml") for p in inputs):
        if len(inputs) != 1:
            raise UsageError("a jobs file is the whole batch: pass it alone (its jobs can name any files)")
        raw = _read_jobs_file(inputs[0])
        base = inputs[0].resolve().parent
    else:
        raw = []
        for path in inputs:
            if path.is_dir():
                found = sorted(p for p in path.iterdir() if is_input(p))
                if not found:
                    raise UsageError(f"folder {path} holds no script (.txt) or recording (.wav, .mp3, ...)")
                raw += [{"input": str(p)} for p in found]
            elif path.exists():
                raw.append({"input": str(path)})
            else:
                raise UsageError(f"input {path} does not exist")
        base = Path.cwd()
    specs = [_spec(entry, i, base, opts) for i, entry in enumerate(raw)]
    seen: dict[str, str] = {}
    for s in specs:
        if s.name in seen:
            raise UsageError(f"two jobs are named '{s.name}' ({seen[s.name]} and {s.input}): each writes <name>.mp4, "
                             "so give one another name (name: in a jobs.yaml)")
        seen[s.name] = s.input
    return specs


def _read_jobs_file(path: Path) -> list[dict]:
    import yaml

    if not path.is_file():
        raise UsageError(f"jobs file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"jobs file {path} does not parse: {first}") from None
    if isinstance(data, dict) and set(data) == {"jobs"}:
        data = data["jobs"]
    if not isinstance(data, list) or not data:
        raise UsageError(f"jobs file {path} must be a list of jobs (or jobs: followed by one), each with at least input:")
    out = []
    for i, entry in enumerate(data, 1):
        if isinstance(entry, str):
            entry = {"input": entry}
        if not isinstance(entry, dict):
            raise UsageError(f"jobs file {path}, job {i}: must be a mapping with input: (and name:, say:, overrides: ...)")
        unknown = sorted(set(entry) - set(JOB_KEYS))
        if unknown:
            raise UsageError(f"jobs file {path}, job {i}: unknown key '{unknown[0]}': a job has {', '.join(JOB_KEYS)}")
        if "input" not in entry:
            raise UsageError(f"jobs file {path}, job {i}: no input: name the script or recording to render")
        entry = dict(entry, _where=f"jobs file {path}, job {i}")
        out.append(entry)
    return out


def _spec(entry: dict, index: int, base: Path, opts: Options) -> JobSpec:
    where = entry.get("_where", "")
    try:
        return _build_spec(entry, base, opts)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}" if where else str(exc)) from None


def _path(value, base: Path, what: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{what} must be a path")
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _build_spec(entry: dict, base: Path, opts: Options) -> JobSpec:
    from talkgen.inputs import input_kind

    src = _path(entry["input"], base, "input")
    input_kind(src)  # exists, not a folder, not text named .wav
    name = entry.get("name", src.stem)
    if not isinstance(name, str) or not _NAME.match(name) or name == "batch":
        raise UsageError(f"job name {name!r} must be letters, digits, '.', '_' or '-' (and not 'batch'): it names <name>.mp4")
    say = entry.get("say", opts.say)
    if not isinstance(say, bool):
        raise UsageError(f"say: must be true or false, got {say!r}")
    overrides = list(opts.overrides)
    own = entry.get("overrides", [])
    if isinstance(own, dict):
        own = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in own.items()]
    if not isinstance(own, list) or not all(isinstance(o, str) for o in own):
        raise UsageError("overrides: must be a list of key.sub=value (or a mapping of key.sub: value)")
    overrides += own
    persona = entry.get("persona", opts.persona)
    if persona is not None and not isinstance(persona, str):
        raise UsageError("persona: must be text")
    voice = _path(entry["voice"], base, "voice") if "voice" in entry else opts.voice
    voice_text = entry.get("voice_text", opts.voice_text)
    if voice_text is not None and not isinstance(voice_text, str):
        raise UsageError("voice_text: must be text")
    recipe = build_recipe(opts.recipe, overrides, opts.size, persona, voice, voice_text)
    portrait = _path(entry["portrait"], base, "portrait") if "portrait" in entry else opts.portrait
    if portrait is not None and not Path(portrait).is_file():
        raise UsageError(f"portrait {portrait} does not exist: give a picture of a face (JPEG/PNG)")
    from talkgen.engines.avatar import traits_for

    traits_for(recipe.render)  # render.nproc that does not suit the back end: before any job
    return JobSpec(name=name, input=str(src.resolve()), say=say, recipe=recipe.to_dict(),
                   portrait=str(Path(portrait).resolve()) if portrait else None, force=list(opts.force),
                   from_stage=opts.from_stage)
