"""A turn's reply as a clip (speech, plan, chunks, one MP4), and every clip joined for /save.

The same stage functions as `talkgen render`, called once per turn with engines that
stay loaded; `stop` is called between sentences and frames so a render can be stopped.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from talkgen.errors import UsageError
from talkgen.job import Job, sha256_file, write_json_atomic
from talkgen.recipe import Recipe


def render_clip(turn_dir: Path, text: str, recipe: Recipe, tts, avatar, stop: Callable[[], None], portrait=None) -> dict:
    """Speak `text` and animate it into turn_dir/clip.mp4 (with clip.srt); return what the clip holds.
    With `portrait`, `avatar` is a multi-rank back end's rank group (talkgen.ranks.launch.RankGroup)."""
    from talkgen.chunks import chunk_dir, chunk_name
    from talkgen.engines.avatar import traits_for
    from talkgen.speech import SpeechTrack
    from talkgen.stages.assemble import assemble
    from talkgen.stages.plan import make_plan
    from talkgen.stages.render import render_chunks, render_key
    from talkgen.stages.speak import speak
    from talkgen.subtitles import write_srt

    c, t = recipe.render, recipe.tts
    wav, alignment = turn_dir / "speech.wav", turn_dir / "alignment.json"
    speak(text, tts, wav, alignment, t.sentence_pause_s, t.paragraph_pause_s, progress=lambda done, total: stop())
    track = SpeechTrack.load(wav, alignment)
    traits = traits_for(c)
    plan = make_plan(track, c.fps, min(c.max_chunk_s, traits.max_chunk_s), c.min_chunk_s, traits.frames_per_clip,
                     traits.lead_frames)
    write_json_atomic(turn_dir / "plan.json", plan.to_dict())
    chunk_dir(turn_dir)
    if portrait is not None:  # `avatar` is the rank group: the clip's chunks are rendered on the ranks
        from talkgen.chunks import clear_stale_chunks, next_chunk
        from talkgen.stages.render import rank_request

        engine = {**traits.identity, "portrait": portrait.sha256}
        key = render_key(c, engine, speech=sha256_file(wav), plan=plan.to_dict())
        clear_stale_chunks(turn_dir, key)
        _, _, reused = next_chunk(turn_dir, plan, key)
        # A clip on the ranks stops between clips, not between frames: the ranks render a job whole.
        avatar.render(turn_dir, rank_request(recipe, portrait, turn_dir, key), plan, skip=set(range(reused)))
        stop()
    else:
        key = render_key(c, avatar.identity(), speech=sha256_file(wav), plan=plan.to_dict())
        render_chunks(Job(turn_dir), key, plan, avatar, track, c.crf, c.preset, on_frames=lambda n: stop())
    write_srt(turn_dir / "clip.srt", track.sentences, track.sample_rate)
    chunks = [chunk_name(ch.index) for ch in plan.chunks]
    info = assemble([turn_dir / rel for rel in chunks], wav, turn_dir / "clip.srt", turn_dir / "joined.mp4",
                    turn_dir / "clip.mp4", turn_dir / "concat.txt", plan.total_frames, plan.fps, plan.seams())
    (turn_dir / "joined.mp4").unlink(missing_ok=True)
    return {
        "clip": "clip.mp4", "duration_s": info["duration_s"], "frames": info["frames"], "fps": info["fps"],
        "width": info["width"], "height": info["height"], "chunks": chunks,
    }


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
