"""plan: cut the speech into render chunks of at most max_chunk_s, at the longest pauses.

plan.json is the unit of work for the renderer and the avatar ranks (talkgen.chunks.Plan):

    {"fps": 25, "sample_rate": 22050, "samples": N, "total_frames": F,
     "max_chunk_s": 8.0, "frames_per_clip": 1,
     "chunks": [{"index": 0, "start_frame": 0, "end_frame": 187,
                 "start_s": 0.0, "end_s": 7.48, "pause_s": 0.36}, ...]}

Chunks are whole numbers of video frames (and, with the back end's lead frames, of its
clip length), cover
[0, total_frames) without gaps, and `pause_s` is the silence around the cut that ends
the chunk (0 where no pause was available and the cut had to fall inside speech).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from talkgen.chunks import Chunk, Plan
from talkgen.speech import SILENCE_DB
from talkgen.stages import Context, Stage

if TYPE_CHECKING:
    import numpy as np

    from talkgen.engines.avatar import AvatarTraits
    from talkgen.job import StageRecord
    from talkgen.speech import SpeechTrack

# The code that makes plan.json, for the stage's cache key (talkgen.job.code_hash): the cuts, the
# loudness they are made at, and the file's form.
MADE_BY = (__name__, "talkgen.speech", "talkgen.chunks")


def frame_energy_db(track: "SpeechTrack", fps: int, total_frames: int, first: int = 0) -> "np.ndarray":
    """RMS level of each video frame's slice of audio, frames [first, total_frames), in dBFS, read in blocks."""
    import numpy as np

    sr = track.sample_rate
    out = np.empty(max(0, total_frames - first), dtype=np.float32)
    block = fps * 60
    for f0 in range(first, total_frames, block):
        f1 = min(total_frames, f0 + block)
        s0, s1 = f0 * sr // fps, f1 * sr // fps
        audio = track.read(s0, s1)
        for f in range(f0, f1):
            a = audio[f * sr // fps - s0 : (f + 1) * sr // fps - s0]
            rms = float(np.sqrt(np.mean(a * a))) if len(a) else 0.0
            out[f - first] = 20 * math.log10(max(rms, 1e-6))
    return out


def pause_lengths(silent: "np.ndarray") -> "np.ndarray":
    """For each frame boundary b (before frame b), the silent frames on its quieter side.

    min(silence run just before b, silence run just after b) is largest in the middle of
    the longest pause, which is where a cut is least visible and audible.
    """
    import numpy as np

    n = len(silent)
    before = np.zeros(n + 1, dtype=np.int32)
    after = np.zeros(n + 1, dtype=np.int32)
    for b in range(1, n + 1):
        before[b] = before[b - 1] + 1 if silent[b - 1] else 0
    for b in range(n - 1, -1, -1):
        after[b] = after[b + 1] + 1 if silent[b] else 0
    return np.minimum(before, after)


class Planner:
    """Cuts the speech into chunks as it is spoken: each cut as soon as the audio it depends on is known.

    A cut is the longest pause (pause_lengths) in its window of min..max chunk frames, so it
    depends on the audio up to the window's end plus the pause after it, and on nothing later:
    the shorter side of a pause is known once a loud frame ends it or it has run as long as the
    side before. Fed the whole speech at once (make_plan) or in pieces as it is written, it
    makes the same plan.
    """

    def __init__(self, fps: int, sample_rate: int, max_chunk_s: float, min_chunk_s: float, frames_per_clip: int = 1,
                 lead_frames: int = 0, first_chunk_s: float = 0.0):
        clip, lead = max(1, frames_per_clip), max(0, lead_frames)
        max_frames = int(max_chunk_s * fps) // clip * clip
        if max_frames < clip:
            from talkgen.errors import UsageError

            raise UsageError(f"render.max_chunk_s={max_chunk_s} is shorter than one clip of {clip} frames at {fps} fps")
        if lead >= clip:
            raise ValueError(f"a back end's lead of {lead} frames must be shorter than its clip of {clip}")
        self.fps, self.sample_rate, self.max_chunk_s = fps, sample_rate, max_chunk_s
        self.clip, self.lead, self.max_frames = clip, lead, max_frames
        self.min_frames = max(clip, min(max_frames, int(math.ceil(min_chunk_s * fps / clip)) * clip))
        # The first chunk's bounds: shorter, when first_chunk_s asks for it, but at least a clip; it is
        # cut at the longest pause in its second half.
        self.first_max, self.first_min = max_frames, self.min_frames
        if first_chunk_s > 0:
            self.first_max = min(max_frames, max(clip, int(first_chunk_s * fps) // clip * clip))
            self.first_min = min(self.min_frames, max(clip, self.first_max // 2 // clip * clip))
        self.silent: list[bool] = []  # per frame whose audio is known: quieter than SILENCE_DB
        self.chunks: list[Chunk] = []
        self.start = 0
        self.samples = 0

    def _measure(self, track: "SpeechTrack", frames: int) -> None:
        if frames > len(self.silent):
            self.silent.extend(bool(x) for x in frame_energy_db(track, self.fps, frames, len(self.silent)) < SILENCE_DB)

    def _pause(self, b: int, complete: bool) -> int | None:
        """pause_lengths(...)[b], or None while the audio after b does not decide it yet."""
        silent = self.silent
        before = 0
        while b - before - 1 >= 0 and silent[b - before - 1]:
            before += 1
        i = b
        while i < len(silent) and silent[i] and i - b < before:
            i += 1
        if i - b >= before or i < len(silent) or complete:
            return i - b
        return None

    def cut(self, track: "SpeechTrack", samples: int, complete: bool) -> list[Chunk]:
        """The chunks that the first `samples` of the speech (all of it when `complete`) decide, beyond those cut before."""
        sr, fps, clip, lead = self.sample_rate, self.fps, self.clip, self.lead
        self.samples = samples
        if complete:
            speech_frames = math.ceil(samples * fps / sr)
            self._measure(track, math.ceil(speech_frames / clip) * clip)
            known = len(self.silent)
        else:
            known = samples * fps // sr
            while known and known * sr // fps > samples:
                known -= 1
            while (known + 1) * sr // fps <= samples:
                known += 1
            self._measure(track, known)
        made = []
        while True:
            start = self.start
            lo, hi = (self.first_min, self.first_max) if not self.chunks else (self.min_frames, self.max_frames)
            if complete and start >= speech_frames:
                break
            if complete and speech_frames - start <= hi - lead:
                end, pause = start + math.ceil((speech_frames - start + lead) / clip) * clip - lead, 0
            elif not complete and known - start <= hi - lead:
                break  # this could still be the last chunk: more speech decides
            else:
                # Greedy: the longest pause in the allowed window; ties go to the later cut (fewer chunks).
                best, end = -1, start + hi - lead
                for b in range(start + lo - lead, start + hi - lead + 1, clip):
                    length = self._pause(b, complete)
                    if length is None:
                        return made
                    if length >= best:
                        best, end = length, b
                pause = best
            chunk = Chunk(len(self.chunks), start, end, round(start / fps, 4), round(end / fps, 4), round(pause / fps, 4))
            self.chunks.append(chunk)
            made.append(chunk)
            self.start = end
        return made

    def plan(self) -> Plan:
        """The whole plan, once `cut` was called with the whole speech."""
        return Plan(self.fps, self.sample_rate, self.samples, self.start, self.max_chunk_s, self.chunks,
                    frames_per_clip=self.clip, lead_frames=self.lead)


def make_plan(
    track: "SpeechTrack", fps: int, max_chunk_s: float, min_chunk_s: float, frames_per_clip: int = 1, lead_frames: int = 0,
    first_chunk_s: float = 0.0,
) -> Plan:
    """Chunks whose length plus `lead_frames` is whole clips (see AvatarEngine.lead_frames);
    the last chunk runs past the speech to its clip boundary, as the back end renders it."""
    planner = Planner(fps, track.sample_rate, max_chunk_s, min_chunk_s, frames_per_clip, lead_frames, first_chunk_s)
    planner.cut(track, track.samples, complete=True)
    return planner.plan()


# -- the stage ---------------------------------------------------------------------------

def _shape(ctx: Context) -> tuple[AvatarTraits, float]:
    from talkgen.engines.avatar import traits_for

    c = ctx.recipe.render
    traits = traits_for(c)
    return traits, min(c.max_chunk_s, traits.max_chunk_s)


def _key(ctx: Context) -> str:
    from talkgen.job import cache_key, code_hash

    c = ctx.recipe.render
    traits, max_chunk_s = _shape(ctx)
    return cache_key(speech=ctx.keys["speak"], fps=c.fps, max_chunk_s=max_chunk_s, min_chunk_s=c.min_chunk_s,
                     first_chunk_s=c.first_chunk_s, frames_per_clip=traits.frames_per_clip, lead_frames=traits.lead_frames,
                     talkgen=code_hash(*MADE_BY))


def _run(ctx: Context) -> StageRecord:
    from talkgen.job import StageRecord, write_json_atomic

    c = ctx.recipe.render
    traits, max_chunk_s = _shape(ctx)
    track = ctx.feeds.speech.wait()
    planner = Planner(c.fps, track.sample_rate, max_chunk_s, c.min_chunk_s, traits.frames_per_clip, traits.lead_frames,
                      c.first_chunk_s)
    seen = 0
    while True:
        track.wait_for(seen + 1)  # more of the speech, or all of it
        samples, complete = track.known()
        for chunk in planner.cut(track, samples, complete):
            ctx.feeds.chunks.put(chunk)
        if complete:
            break
        seen = samples
    plan = planner.plan()
    write_json_atomic(ctx.job.path("plan.json"), plan.to_dict())
    ctx.feeds.chunks.close()
    ctx.feeds.plan.set(plan)
    return StageRecord(key="", outputs=ctx.job.output_hashes(["plan.json"]), extra={"chunks": len(plan.chunks)})


def _load(ctx: Context) -> None:
    plan = Plan.load(ctx.job.path("plan.json"))
    for chunk in plan.chunks:
        ctx.feeds.chunks.put(chunk)
    ctx.feeds.chunks.close()
    ctx.feeds.plan.set(plan)


STAGE = Stage("plan", reads=("speak",), writes=("plan.json",), roles=(), kept="the plan", applies=lambda source: True,
              key=_key, run=_run, load=_load, engine=lambda ctx: ("plan", ""))
