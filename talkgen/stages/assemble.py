"""assemble: join the video-only chunks by stream copy, then mux the speech once."""

from __future__ import annotations

from pathlib import Path

from talkgen import media
from talkgen.errors import TalkgenError


def assemble(chunks: list[Path], wav: Path, srt: Path, joined: Path, final: Path, list_file: Path, expect_frames: int, fps: int) -> dict:
    media.concat_videos(chunks, joined, list_file)
    media.mux(joined, wav, final, expect_frames / fps, srt)
    info = media.probe(final)
    return verify_output(info, final, expect_frames, fps)


def verify_output(info: dict, path: Path, expect_frames: int, fps: int) -> dict:
    """Refuse to call a render done unless the file holds what was rendered."""
    streams = {s["codec_type"]: s for s in info.get("streams", [])}
    video, audio = streams.get("video"), streams.get("audio")
    if video is None or audio is None:
        raise TalkgenError(f"{path.name} lacks a {'video' if video is None else 'audio'} stream after muxing")
    frames = int(video.get("nb_read_packets") or video.get("nb_frames") or 0)
    if frames != expect_frames:
        raise TalkgenError(f"{path.name} has {frames} frames, expected {expect_frames}: the chunk join lost frames")
    vdur = frames / fps
    adur = float(audio.get("duration") or 0)
    if abs(adur - vdur) > 1.5 / fps + 0.03:
        raise TalkgenError(f"{path.name} audio lasts {adur:.3f} s but video {vdur:.3f} s")
    return {
        "video_codec": video.get("codec_name"),
        "pix_fmt": video.get("pix_fmt"),
        "frames": frames,
        "fps": fps,
        "width": video.get("width"),
        "height": video.get("height"),
        "audio_codec": audio.get("codec_name"),
        "duration_s": round(vdur, 3),
        "audio_duration_s": round(adur, 3),
    }
