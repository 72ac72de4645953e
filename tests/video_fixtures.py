"""ffmpeg helpers that make and compare test videos: copies with the audio shifted, swapped or the
picture frozen (what `talkgen check` must catch), a still picture as a phone's recording, and
per-frame hashes. Tests and benchmarks/bench_check.py use them; talkgen itself never does, so
they live here and not in talkgen/media.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from talkgen import media

QUIET = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]


def _ffmpeg(args: list[str], what: str) -> None:
    proc = subprocess.run([media.ffmpeg_bin(), *QUIET, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"ffmpeg failed while {what}: {proc.stderr.strip() or f'exit {proc.returncode}'}")


def _duration(path: Path) -> float:
    return float(media.probe(path)["format"]["duration"])


def frame_hashes(path: Path) -> list[str]:
    """Per-frame MD5 of the decoded video, to compare videos by content."""
    proc = subprocess.run([media.ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path), "-map", "0:v",
                           "-f", "framemd5", "pipe:1"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"cannot decode video in {path}: {proc.stderr.strip()}")
    return [line.rsplit(",", 1)[-1].strip() for line in proc.stdout.splitlines() if line and not line.startswith("#")]


def shift_audio(src: Path, out: Path, seconds: float) -> None:
    """A copy of src whose audio is late by `seconds` (early when negative), same length, video copied:
    a copy `talkgen check` must fail."""
    if seconds >= 0:
        inputs = ["-i", str(src), "-i", str(src), "-af", f"adelay={round(seconds * 1000)}:all=1"]
    else:
        inputs = ["-i", str(src), "-ss", f"{-seconds:.3f}", "-i", str(src), "-af", "apad"]
    _ffmpeg([*inputs, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-t", f"{_duration(src):.6f}",
             "-f", "mp4", str(out)], f"shifting the audio of {src.name}")


def replace_audio(video: Path, audio_from: Path, out: Path) -> None:
    """`video`'s picture with the sound of `audio_from`, padded or cut to the video's length: a mouth
    that has nothing to do with the voice."""
    _ffmpeg(["-i", str(video), "-i", str(audio_from), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-af", "apad",
             "-c:a", "aac", "-t", f"{_duration(video):.6f}", "-f", "mp4", str(out)], f"replacing the audio of {video.name}")


def freeze_video(src: Path, out: Path, first: int, last: int) -> None:
    """A copy of src whose frames first..last all show frame `first` (a stalled renderer), audio copied."""
    _ffmpeg(["-i", str(src), "-filter_complex", f"[0:v]split[a][b];[a][b]freezeframes=first={first}:last={last}:replace={first}[v]",
             "-map", "[v]", "-map", "0:a:0", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "copy",
             "-f", "mp4", str(out)], f"freezing frames of {src.name}")


def still_video(image: Path, out: Path, seconds: float, audio: Path | None = None, size: int = 128) -> None:
    """A video of one picture, `seconds` long, with `audio`'s sound (none when not given), in the
    container out's suffix names: a phone's recording of a question, as talkgen sees it."""
    args = ["-loop", "1", "-framerate", "25", "-i", str(image)]
    maps = ["-map", "0:v:0"]
    if audio is not None:
        args += ["-i", str(audio)]
        maps += ["-map", "1:a:0", "-c:a", "aac"]
    _ffmpeg([*args, *maps, "-vf", f"scale={size}:{size}", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
             "-t", f"{seconds:.3f}", str(out)], f"writing {out.name}")
