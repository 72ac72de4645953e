"""What the input file is: a script to read or answer, or a recording of a question."""

from __future__ import annotations

from pathlib import Path

from talkgen.errors import UsageError

AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".ogg", ".oga", ".opus", ".flac", ".aac", ".webm", ".wma", ".aiff", ".aif"}


def input_kind(path: Path) -> str:
    """'audio' or 'script', by the file's suffix; a file whose content contradicts it is refused."""
    if not path.exists():
        raise UsageError(f"input {path} does not exist")
    if path.is_dir():
        raise UsageError(f"input {path} is a folder: pass a script (.txt) or a recording (.wav, .mp3, ...)")
    if path.suffix.lower() in AUDIO_SUFFIXES:
        if _is_text(path):
            raise UsageError(f"{path} holds text, not audio: rename it to .txt to use it as a script")
        return "audio"
    return "script"


def refuse_audio_as_script(path: Path) -> None:
    """Called when a script looks binary: say so plainly if it is in fact a recording."""
    from talkgen import media

    try:
        media.audio_duration(path)
    except UsageError:
        return
    raise UsageError(f"{path} holds audio, not text: give it an audio suffix such as .wav to ask it as a question")


def _is_text(path: Path) -> bool:
    head = path.read_bytes()[:4096]
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return sum(1 for b in head if b < 32 and b not in (9, 10, 13)) == 0
