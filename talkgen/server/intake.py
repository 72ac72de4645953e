"""What a client may send: the fields of a job, the overrides it may set, and its uploads.

A client can never make the server run a program or read or write a path of its choosing: the
overrides it may send are a short list of settings that change the reply, the voice or the
picture, each with its type and range (never paths, interpreters, launchers, weights or
devices, which only the person who started the server sets). A field the API does not know is
an error. Uploads are capped in bytes while they stream (uploads.py) and judged here by what
they are, whatever their name or content type says: a recording must hold audio ffmpeg decodes,
no longer than its cap; a portrait must be a PNG or JPEG of sane size with a face in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from talkgen.errors import UsageError

MB = 1 << 20
# Bytes, refused while streaming.
UPLOAD_CAPS = {"audio": 20 * MB, "portrait": 10 * MB, "voice": 10 * MB}
JSON_CAP = 64 * 1024  # a JSON body, and each text field of a form
# Seconds of audio, judged by decoding.
QUESTION_S = 60.0
VOICE_S = (2.0, 15.0)  # what F5-TTS clones from
SCRIPT_CHARS = 2000
PERSONA_CHARS = 300
PORTRAIT_SIDE = 4096  # pixels: a bigger picture would only be scaled down, after taking the memory to decode it
TEXT_FIELDS = ("script", "say", "persona", "session", "overrides")
FILE_FIELDS = tuple(UPLOAD_CAPS)


@dataclass(frozen=True)
class Setting:
    kind: type
    low: float
    high: float
    even: bool = False


# The only recipe settings a client may set: the reply, the voice, the picture.
OVERRIDES = {
    "llm.max_reply_words": Setting(int, 1, 200),
    "llm.temperature": Setting(float, 0.0, 2.0),
    "llm.top_p": Setting(float, 0.05, 1.0),
    "llm.seed": Setting(int, 0, 2**31 - 1),
    "tts.length_scale": Setting(float, 0.5, 2.0),
    "tts.speed": Setting(float, 0.5, 2.0),
    "tts.sentence_pause_s": Setting(float, 0.0, 2.0),
    "tts.paragraph_pause_s": Setting(float, 0.0, 3.0),
    "tts.seed": Setting(int, 0, 2**31 - 1),
    "render.size": Setting(int, 64, 1024, even=True),
    "render.seed": Setting(int, 0, 2**31 - 1),
    "render.crf": Setting(int, 14, 35),
}


class Rejected(Exception):
    """A request refused with a 4xx and one line saying what to do."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class JobIn(BaseModel):
    """POST /v1/jobs as JSON (a form sends the same fields, overrides as JSON text, and files)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    script: str | None = Field(None, description="The question (or, with say, the words to say). Exactly one of script or an audio file.")
    say: bool = Field(False, description="Say the script (or the recording's transcript) as written: no LLM.")
    persona: str | None = Field(None, description="Who the avatar is when it answers; kept by the session for its next jobs.")
    session: str | None = Field(None, description="The conversation to go on with (an id this server gave); none starts one.")
    overrides: dict[str, int | float | str | bool] = Field(default_factory=dict, description="Settings from the allow-list: "
                                                                                             + ", ".join(OVERRIDES))


@dataclass
class Ask:
    """A job as a client asked for it, every field checked."""

    script: str | None
    say: bool
    persona: str | None
    session: str | None
    overrides: dict
    files: dict[str, Path] = field(default_factory=dict)  # audio, portrait, voice: where they were streamed to

    def override_items(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.overrides.items()]


def from_json(data: object) -> Ask:
    if not isinstance(data, dict):
        raise Rejected(400, "the body must be a JSON object: {\"script\": \"...\"}")
    try:
        model = JobIn.model_validate(data)
    except ValidationError as exc:
        raise Rejected(400, _one_line(exc)) from None
    return _checked(model, {})


def from_form(fields: dict[str, str], files: dict[str, Path]) -> Ask:
    data: dict = {k: (v if v != "" else None) for k, v in fields.items() if k not in ("say", "overrides")}
    if "say" in fields:
        word = fields["say"].strip().lower()
        if word not in ("true", "false", "1", "0", "on", "off", "yes", "no", ""):
            raise Rejected(400, f"say: must be true or false, got {fields['say'][:20]!r}")
        data["say"] = word in ("true", "1", "on", "yes")
    if fields.get("overrides", "").strip():
        try:
            data["overrides"] = json.loads(fields["overrides"])
        except ValueError:
            raise Rejected(400, "overrides: must be a JSON object such as {\"render.size\": 256}") from None
    return _checked(_model(data), files)


def _model(data: dict) -> JobIn:
    try:
        return JobIn.model_validate(data)
    except ValidationError as exc:
        raise Rejected(400, _one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "the body"
    if err["type"] == "extra_forbidden":
        return f"unknown field '{where}': a job has {', '.join(TEXT_FIELDS)} (and, in a form, the files {', '.join(FILE_FIELDS)})"
    return f"{where}: {err['msg']}"


def _checked(model: JobIn, files: dict[str, Path]) -> Ask:
    from talkgen.text.script import has_words

    if (model.script is None) == ("audio" not in files):
        raise Rejected(400, "send exactly one question: a script (text) or an audio file (a recording)")
    if model.script is not None:
        if len(model.script) > SCRIPT_CHARS:
            raise Rejected(400, f"script is {len(model.script)} characters: at most {SCRIPT_CHARS}")
        if not has_words(model.script):
            raise Rejected(400, "script has no words: write the question (or, with say, the words to say)")
    persona = model.persona
    if persona is not None:
        persona = " ".join(persona.split())
        if not persona or len(persona) > PERSONA_CHARS:
            raise Rejected(400, f"persona must be 1 to {PERSONA_CHARS} characters: who the avatar is, e.g. \"a tour guide in Lisbon\"")
    return Ask(model.script, model.say, persona, model.session, check_overrides(model.overrides), dict(files))


def check_overrides(overrides: dict) -> dict:
    """The overrides, if every one is on the allow-list with a value of its type and range."""
    for key, value in overrides.items():
        setting = OVERRIDES.get(key)
        if setting is None:
            raise Rejected(400, f"overrides: '{key[:60]}' is not a setting a client may change; it may change {', '.join(OVERRIDES)}")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (setting.kind is int and not isinstance(value, int)) or not setting.low <= value <= setting.high \
                or (setting.even and value % 2):
            kind = "an even whole number" if setting.even else "a whole number" if setting.kind is int else "a number"
            raise Rejected(400, f"overrides: {key} must be {kind} from {setting.low:g} to {setting.high:g}, got {str(value)[:30]}")
    return dict(overrides)


# -- uploads, judged by what they are --------------------------------------------------------

def judge_audio(path: Path) -> float:
    """A recorded question: audio ffmpeg decodes, at most QUESTION_S long; its seconds."""
    seconds = _recording(path, "audio", QUESTION_S)
    if seconds < 0.3:
        raise Rejected(400, "audio holds no speech (under 0.3 s): record the question again")
    return seconds


def judge_voice(path: Path) -> float:
    seconds = _recording(path, "voice", VOICE_S[1])
    if seconds < VOICE_S[0]:
        raise Rejected(400, f"voice is {seconds:.1f} s: give {VOICE_S[0]:g}-{VOICE_S[1]:g} s of clean speech")
    return seconds


def _recording(path: Path, name: str, at_most_s: float) -> float:
    from talkgen import media
    from talkgen.inputs import input_kind

    try:
        if input_kind(path) != "audio":
            raise Rejected(400, f"{name} holds no sound: send a recording (WebM/Opus, WAV, MP3, M4A, OGG or FLAC)")
        seconds = media.decoded_audio_s(path, at_most_s)
    except UsageError as exc:
        raise Rejected(400, _named(exc, path, name)) from None
    if seconds > at_most_s:
        raise Rejected(413, f"{name} is longer than {at_most_s:g} s: send a shorter recording")
    return seconds


def judge_portrait(path: Path) -> None:
    """A portrait: a PNG or JPEG (by its bytes) of at most PORTRAIT_SIDE pixels a side, with a face."""
    from talkgen import media
    from talkgen.portrait import load_portrait

    head = path.read_bytes()[:16]
    if not (head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff")):
        raise Rejected(400, "portrait must be a PNG or JPEG picture of a face")
    try:
        streams = media.probe(path).get("streams") or [{}]
    except Exception:  # noqa: BLE001 - whatever ffprobe makes of it, it is not a picture we take
        raise Rejected(400, "portrait cannot be read as a picture: send a PNG or JPEG") from None
    width, height = streams[0].get("width") or 0, streams[0].get("height") or 0
    if not (0 < width <= PORTRAIT_SIDE and 0 < height <= PORTRAIT_SIDE):
        raise Rejected(400, f"portrait is {width}x{height} pixels: send one of at most {PORTRAIT_SIDE} a side")
    try:
        load_portrait(path, 256)
    except UsageError as exc:
        raise Rejected(400, _named(exc, path, "portrait")) from None


def _named(exc: Exception, path: Path, name: str) -> str:
    """The error's line with the upload's name in place of where the server keeps it."""
    text = str(exc).replace(str(path), name).replace(path.name, name)
    return text if text.startswith(name) else f"{name}: {text}"
