"""What the input file is: a script to read or answer, or a recording of a question.

Decided by content, not by name: a phone records a question as .mp4 or .mov, and its audio
track is the question. Text is a script; a file with an audio stream is a recording.
"""

from __future__ import annotations

from pathlib import Path

from talkgen.errors import UsageError

AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".ogg", ".oga", ".opus", ".flac", ".aac", ".webm", ".wma", ".aiff", ".aif"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".3gp", ".ts", ".mts", ".flv", ".wmv", ".mpg", ".mpeg"}
# Containers that hold real video. ffprobe also finds a "video stream" in pictures (png_pipe)
# and in arbitrary bytes (its bintext demuxer): those are not videos without sound.
VIDEO_FORMATS = {"mov", "mp4", "matroska", "webm", "avi", "mpegts", "flv", "asf", "mpeg", "ogg", "3gp", "mxf", "nut"}


def input_kind(path: Path) -> str:
    """'audio' or 'script', by the file's content; a file that is neither is refused in one line."""
    if not path.exists():
        raise UsageError(f"input {path} does not exist")
    if path.is_dir():
        raise UsageError(f"input {path} is a folder: pass a script (.txt) or a recording (.wav, .mp3, .mp4, ...)")
    media_name = path.suffix.lower() in AUDIO_SUFFIXES | VIDEO_SUFFIXES
    if _is_text(path):
        if media_name:
            raise UsageError(f"{path} holds text, not audio: rename it to .txt to use it as a script")
        return "script"
    from talkgen import media

    media.require_ffmpeg()  # ffprobe decides, so it must be there
    found = media.stream_kinds(path)
    kinds, formats = found if found else (set(), set())
    if "audio" in kinds:
        return "audio"
    if "video" in kinds and formats & VIDEO_FORMATS:
        raise UsageError(f"{path} is a video with no audio stream: talkgen answers the question spoken in a recording; "
                         "pass a recording with sound (a video with its audio track, or .wav, .mp3, ...)")
    if media_name:
        media.audio_duration(path)  # raises the one line that says what ffmpeg could not read
    return "script"  # the script reader refuses a binary file in one line


def require_recording(path: Path) -> None:
    """For chat's /audio: the file must be a recording (an audio stream in any container)."""
    if input_kind(path) != "audio":
        raise UsageError(f"{path} holds text, not a recording: type the question, or give a recording (.wav, .mp3, .mp4, ...)")


def _is_text(path: Path) -> bool:
    head = path.read_bytes()[:4096]
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return sum(1 for b in head if b < 32 and b not in (9, 10, 13)) == 0
