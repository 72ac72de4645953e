"""Every turn's clip joined into one video, for /save. (A turn's own clip is a job in its folder,
made by the sequencer as `talkgen render` makes a video: chat/turns.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

from talkgen.errors import UsageError


def join_clips(turn_dirs: list[Path], out: Path, work: Path) -> dict:
    """Every turn's clip one after another in `out`, with subtitles in out.srt beside it.

    The clips' own AAC tracks would slip by a priming frame (about 21 ms) at every join, so
    this joins their video-only chunks by stream copy and encodes all the speech once.
    """
    from talkgen.chunks import Plan, chunk_name
    from talkgen.speech import Sentence, SpeechTrack, WavWriter
    from talkgen.stages.assemble import assemble
    from talkgen.subtitles import write_srt

    plans = [Plan.load(d / "plan.json") for d in turn_dirs]
    tracks = [SpeechTrack.load(d / "speech.wav", d / "alignment.json") for d in turn_dirs]
    if len({(p.fps, t.sample_rate) for p, t in zip(plans, tracks)}) > 1:
        raise UsageError("the clips differ in frame rate or voice (the session was resumed with other settings): they cannot be joined")
    if len({_size(d) for d in turn_dirs}) > 1:
        raise UsageError("the clips differ in size (the session was resumed with another render.size or render.liveavatar.size): they cannot be joined")
    fps, sr = plans[0].fps, tracks[0].sample_rate
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    chunks, ends, sentences = [], [], []
    frames = 0
    writer = WavWriter(work / "speech.wav", sr)
    try:
        for k, (d, plan, track) in enumerate(zip(turn_dirs, plans, tracks)):
            # Each turn's speech starts on its clip's first frame.
            start = frames * sr // fps
            writer.silence(start - writer.samples)
            writer.write(track.read(0, track.samples))
            for s in track.sentences:
                sentences.append(Sentence(s.text, k, s.start + start, s.end + start,
                                          [(w, a + start, b + start) for w, a, b in s.words]))
            for ch in plan.chunks:
                chunks.append(d / chunk_name(ch.index))
                ends.append(frames + ch.end_frame)
            frames += plan.total_frames
        writer.silence(frames * sr // fps - writer.samples)
    finally:
        writer.close()
    srt = out.with_suffix(".srt")
    write_srt(srt, sentences, sr)
    info = assemble(chunks, work / "speech.wav", srt, work / "joined.mp4", out, work / "concat.txt", frames, fps, ends[:-1])
    shutil.rmtree(work, ignore_errors=True)
    return info


def _size(turn_dir: Path) -> tuple[int, int]:
    from talkgen import media

    v = next(s for s in media.probe(turn_dir / "clip.mp4")["streams"] if s["codec_type"] == "video")
    return v["width"], v["height"]
