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

if TYPE_CHECKING:
    import numpy as np

    from talkgen.speech import SpeechTrack

# The code that makes plan.json, for the stage's cache key (talkgen.job.code_hash): the cuts, the
# loudness they are made at, and the file's form.
MADE_BY = (__name__, "talkgen.speech", "talkgen.chunks")


def frame_energy_db(track: "SpeechTrack", fps: int, total_frames: int) -> "np.ndarray":
    """RMS level of each video frame's slice of audio, in dBFS, read in blocks."""
    import numpy as np

    sr = track.sample_rate
    out = np.empty(total_frames, dtype=np.float32)
    block = fps * 60
    for f0 in range(0, total_frames, block):
        f1 = min(total_frames, f0 + block)
        s0, s1 = f0 * sr // fps, f1 * sr // fps
        audio = track.read(s0, s1)
        for f in range(f0, f1):
            a = audio[f * sr // fps - s0 : (f + 1) * sr // fps - s0]
            rms = float(np.sqrt(np.mean(a * a))) if len(a) else 0.0
            out[f] = 20 * math.log10(max(rms, 1e-6))
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


def make_plan(
    track: "SpeechTrack", fps: int, max_chunk_s: float, min_chunk_s: float, frames_per_clip: int = 1, lead_frames: int = 0
) -> Plan:
    """Chunks whose length plus `lead_frames` is whole clips (see AvatarEngine.lead_frames);
    the last chunk runs past the speech to its clip boundary, as the back end renders it."""
    speech_frames = math.ceil(track.samples * fps / track.sample_rate)
    clip, lead = max(1, frames_per_clip), max(0, lead_frames)
    max_frames = int(max_chunk_s * fps) // clip * clip
    min_frames = max(clip, min(max_frames, int(math.ceil(min_chunk_s * fps / clip)) * clip))
    if max_frames < clip:
        from talkgen.errors import UsageError

        raise UsageError(f"render.max_chunk_s={max_chunk_s} is shorter than one clip of {clip} frames at {fps} fps")
    if lead >= clip:
        raise ValueError(f"a back end's lead of {lead} frames must be shorter than its clip of {clip}")
    pauses = pause_lengths(frame_energy_db(track, fps, math.ceil(speech_frames / clip) * clip) < SILENCE_DB)
    chunks = []
    start = 0
    while start < speech_frames:
        if speech_frames - start <= max_frames - lead:
            end, pause = start + math.ceil((speech_frames - start + lead) / clip) * clip - lead, 0
        else:
            # Greedy: the longest pause in the allowed window; ties go to the later cut (fewer chunks).
            best, end = -1, start + max_frames - lead
            for b in range(start + min_frames - lead, start + max_frames - lead + 1, clip):
                if pauses[b] >= best:
                    best, end = int(pauses[b]), b
            pause = best
        chunks.append(Chunk(len(chunks), start, end, round(start / fps, 4), round(end / fps, 4), round(pause / fps, 4)))
        start = end
    return Plan(fps, track.sample_rate, track.samples, start, max_chunk_s, chunks, frames_per_clip=clip, lead_frames=lead)
