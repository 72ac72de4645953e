"""assemble: join the video-only chunks by stream copy, then mux the speech once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from talkgen import media
from talkgen.errors import TalkgenError
from talkgen.stages import Context, Stage

if TYPE_CHECKING:
    import numpy as np

    from talkgen.job import StageRecord

# The code that makes final.mp4 and final.srt, for the stage's cache key (talkgen.job.code_hash);
# the speech's encoding is in the key as data too (media.FINAL_AUDIO).
MADE_BY = (__name__, "talkgen.subtitles", "talkgen.media")


def assemble(chunks: list[Path], wav: Path, srt: Path, joined: Path, final: Path, list_file: Path, frames: int, fps: int,
             seams: list[int]) -> dict:
    """Join the chunks (`frames` in all, one after another at `seams`) and mux the speech into `final`."""
    media.concat_videos(chunks, joined, list_file)
    media.mux(joined, wav, final, frames / fps, srt)
    info = verify_output(media.probe(final), final, frames, fps)
    info["seams"] = seam_quality(media.frame_differences(joined), seams)
    return info


def seam_quality(diffs: np.ndarray, seams: list[int]) -> dict:
    """How much each seam jumps: the frame difference across it over the median inside chunks.

    1.0 means a seam moves no more than an ordinary frame does; a jump shows as a ratio
    well above 1. diffs[i] is the difference between frames i and i+1.
    """
    import numpy as np

    across = {f - 1 for f in seams if 0 < f <= len(diffs)}
    inside = np.asarray([d for i, d in enumerate(diffs) if i not in across], np.float64)
    median = float(np.median(inside)) if len(inside) else 0.0
    per_seam = []
    for f in seams:
        if 0 < f <= len(diffs):
            d = float(diffs[f - 1])
            per_seam.append({"frame": f, "difference": round(d, 4), "ratio": round(d / median, 3) if median > 0 else (1.0 if d == 0 else float("inf"))})
    ratios = [s["ratio"] for s in per_seam]
    return {
        "median_inside": round(median, 4),
        "max_ratio": max(ratios) if ratios else None,
        "mean_ratio": round(float(np.mean(ratios)), 3) if ratios else None,
        "per_seam": per_seam,
    }


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


# -- the stage ---------------------------------------------------------------------------

def _key(ctx: Context) -> str:
    from talkgen.job import cache_key, code_hash

    return cache_key(chunks=ctx.keys["render"], speech=ctx.keys["speak"], ffmpeg=ctx.ffmpeg, encoder=media.FINAL_AUDIO,
                     talkgen=code_hash(*MADE_BY))


def _run(ctx: Context) -> StageRecord:
    from talkgen.chunks import chunk_name
    from talkgen.job import StageRecord
    from talkgen.subtitles import write_srt

    job = ctx.job
    plan = ctx.feeds.plan.wait()
    track = ctx.feeds.speech.wait().wait_whole()
    ctx.feeds.finished.all()  # every chunk on disk
    ctx.progress.stage("assemble", None, "")
    rels = [chunk_name(ch.index) for ch in plan.chunks]
    write_srt(job.path("final.srt"), track.sentences, track.sample_rate)
    info = assemble([job.path(rel) for rel in rels], job.path("speech.wav"), job.path("final.srt"), job.path("joined.mp4"),
                    job.path("final.mp4"), job.path("concat.txt"), plan.total_frames, plan.fps, plan.seams())
    job.path("joined.mp4").unlink(missing_ok=True)
    ctx.values["assembled"] = info
    return StageRecord(key="", outputs=job.output_hashes(["final.mp4", "final.srt"]), extra={"output": info})


def _load(ctx: Context) -> None:
    ctx.values["assembled"] = ctx.job.stages["assemble"].extra["output"]


def _engine(ctx: Context) -> tuple[str, str]:
    parts = ctx.ffmpeg.split(" ")
    return "ffmpeg", parts[2] if len(parts) > 2 else ""


STAGE = Stage("assemble", reads=("render", "speak"), writes=("final.mp4", "final.srt"), roles=(), kept="the video",
              applies=lambda source: True, key=_key, run=_run, load=_load, engine=_engine)
