"""Mouth shapes over time: openness (0 shut .. 1 wide open) and width (-1 rounded .. +1 wide).

With a phoneme alignment (Piper), each phoneme has a target shape and a dominance: how
strongly it holds its shape against its neighbours. A frame's shape is the dominance-
weighted mean of the targets under a 180 ms raised-cosine window centred on the frame, so
consonants take the shape of the vowels around them (coarticulation) while m, b and p,
and the labiodentals, hold the lips together. Bilabials then close the lips outright: a
frame whose centre falls inside one is shut whatever its neighbours say.

Without an alignment (F5-TTS spreads characters over the audio, which times nothing), the
shape comes from the audio: openness from the level, width from the spectral balance
(front vowels and sibilants put their energy high, rounded vowels low).

Every value is a function of the frame's time alone (windows reach a fixed distance
either side), so chunks agree however the job is cut.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from talkgen.speech import SILENT_SYMBOLS

if TYPE_CHECKING:
    import numpy as np

    from talkgen.speech import SpeechTrack

# symbol: (openness, width, dominance of openness, dominance of width)
_VOWELS = {
    "a": (1.0, 0.1), "ɑ": (1.0, 0.0), "æ": (0.95, 0.4), "ɐ": (0.8, 0.0), "ʌ": (0.8, 0.0),
    "ɔ": (0.75, -0.6), "ɒ": (0.8, -0.4), "e": (0.55, 0.5), "ɛ": (0.65, 0.4), "ə": (0.45, 0.0),
    "ɜ": (0.5, 0.0), "o": (0.5, -0.8), "ɚ": (0.4, -0.3), "ɝ": (0.45, -0.3), "i": (0.25, 0.9),
    "ɪ": (0.3, 0.6), "u": (0.22, -1.0), "ʊ": (0.3, -0.7), "ᵻ": (0.3, 0.4), "y": (0.2, -0.9),
}
_CONSONANTS = {
    # Lips together (closed outright, see from_alignment).
    "p": (0.0, 0.0, 1.0, 0.2), "b": (0.0, 0.0, 1.0, 0.2), "m": (0.0, 0.0, 1.0, 0.2),
    # Lower lip to the upper teeth.
    "f": (0.08, 0.1, 1.5, 0.4), "v": (0.08, 0.1, 1.5, 0.4),
    # Rounded and protruded.
    "w": (0.12, -1.0, 0.8, 1.5), "ʃ": (0.15, -0.6, 0.6, 1.0), "ʒ": (0.15, -0.6, 0.6, 1.0),
    "ɹ": (0.2, -0.4, 0.3, 0.6),
    # Teeth close together, lips spread.
    "s": (0.1, 0.5, 0.7, 0.5), "z": (0.1, 0.5, 0.7, 0.5), "j": (0.2, 0.6, 0.3, 0.5),
    "θ": (0.15, 0.2, 0.6, 0.3), "ð": (0.15, 0.2, 0.6, 0.3),
    # Tongue consonants: the lips and jaw follow the neighbouring vowels.
    "t": (0.25, 0.1, 0.25, 0.1), "d": (0.25, 0.1, 0.25, 0.1), "n": (0.25, 0.1, 0.25, 0.1),
    "l": (0.3, 0.1, 0.25, 0.1), "ɾ": (0.3, 0.1, 0.2, 0.1), "k": (0.3, 0.0, 0.15, 0.1),
    "ɡ": (0.3, 0.0, 0.15, 0.1), "g": (0.3, 0.0, 0.15, 0.1), "ŋ": (0.3, 0.0, 0.15, 0.1),
    "h": (0.35, 0.0, 0.1, 0.05), "ʔ": (0.2, 0.0, 0.1, 0.05),
}
_REST = (0.0, 0.0, 0.6, 0.3)  # pauses and the time between sentences
_OTHER = (0.3, 0.0, 0.3, 0.1)  # any symbol not in the tables
BILABIALS = frozenset("pbm")
_LENGTH = frozenset("ː")  # lengthens the phoneme before it
_STRESS = frozenset("ˈˌ")  # espeak puts stress marks before the stressed vowel's syllable
WINDOW_S = 0.09  # half-width of the coarticulation window
CLOSE_S = 0.015  # a bilabial pulls the lips shut this long before and after it


def target(symbol: str) -> tuple[float, float, float, float]:
    """(openness, width, dominance of openness, dominance of width) for one espeak symbol."""
    if symbol in SILENT_SYMBOLS:
        return _REST
    if symbol in _VOWELS:
        o, w = _VOWELS[symbol]
        return o, w, 1.0, 0.8
    return _CONSONANTS.get(symbol, _OTHER)


def _segments(track: "SpeechTrack") -> list[tuple[str, float, float]]:
    """Phonemes as (symbol, start s, end s): a length mark's time goes to the phoneme before
    it, a stress mark's to the phoneme after it."""
    sr = track.sample_rate
    out: list[tuple[str, float, float]] = []
    carry: float | None = None  # where a stress mark began, for the next phoneme
    for sym, start, n in track.phonemes:
        a, b = start / sr, (start + n) / sr
        if sym in _LENGTH and out:
            prev = out[-1]
            out[-1] = (prev[0], prev[1], max(prev[2], b))
        elif sym in _STRESS:
            carry = a if carry is None else carry
        elif n > 0 or carry is not None:
            out.append((sym, a if carry is None else min(a, carry), b))
            carry = None
    return out


def _window_mass(lo: "np.ndarray", hi: "np.ndarray") -> "np.ndarray":
    """How much of a raised-cosine window of half-width WINDOW_S lies in [lo, hi] (offsets from its centre, s)."""
    import numpy as np

    def cdf(x):
        x = np.clip(x, -WINDOW_S, WINDOW_S)
        return (x + WINDOW_S) / (2 * WINDOW_S) + np.sin(np.pi * x / WINDOW_S) / (2 * np.pi)

    return np.maximum(cdf(hi) - cdf(lo), 0.0)


def from_alignment(track: "SpeechTrack", times: "np.ndarray") -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
    """Openness, width and lip closure (1: shut by a bilabial) at each time (s) from the phoneme
    alignment, the first two blended across neighbours."""
    import numpy as np

    segs = _segments(track)
    n = len(times)
    if not segs:
        return np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
    starts = np.array([s[1] for s in segs])
    ends = np.array([s[2] for s in segs])
    tg = np.array([target(s[0]) for s in segs])  # (k, 4)
    bilabial = np.array([s[0] in BILABIALS for s in segs])
    open_out = np.empty(n, np.float64)
    width_out = np.empty(n, np.float64)
    shut_out = np.zeros(n, np.float64)
    reach = WINDOW_S + CLOSE_S
    block = 256
    for b0 in range(0, n, block):
        t = times[b0 : b0 + block]
        k0 = int(np.searchsorted(ends, t[0] - reach, side="left"))
        k1 = int(np.searchsorted(starts, t[-1] + reach, side="right"))
        s, e, g = starts[k0:k1], ends[k0:k1], tg[k0:k1]
        mass = _window_mass(s[None, :] - t[:, None], e[None, :] - t[:, None])  # (frames, phonemes)
        # Time not covered by any phoneme (between sentences) is rest.
        rest = np.clip(1.0 - mass.sum(axis=1), 0.0, 1.0)
        wo, ww = mass * g[:, 2], mass * g[:, 3]
        op = (wo @ g[:, 0] + rest * _REST[2] * _REST[0]) / np.maximum(wo.sum(axis=1) + rest * _REST[2], 1e-9)
        wd = (ww @ g[:, 1] + rest * _REST[3] * _REST[1]) / np.maximum(ww.sum(axis=1) + rest * _REST[3], 1e-9)
        bl = bilabial[k0:k1]
        if bl.any():
            # Distance from each frame to each bilabial: 0 inside it.
            d = np.maximum(np.maximum(s[bl][None, :] - t[:, None], t[:, None] - e[bl][None, :]), 0.0)
            shut = np.where(d > 0, np.exp(-((d / CLOSE_S) ** 2)), 1.0).max(axis=1)
            shut_out[b0 : b0 + block] = np.where(d.min(axis=1) == 0, 1.0, shut)
        open_out[b0 : b0 + block] = op
        width_out[b0 : b0 + block] = wd
    return open_out.astype(np.float32), width_out.astype(np.float32), shut_out.astype(np.float32)


def from_spectrum(audio: "np.ndarray", sr: int, centres: "np.ndarray", level: "np.ndarray") -> tuple["np.ndarray", "np.ndarray"]:
    """Openness and width from the audio alone, for speech with no phoneme alignment.

    audio starts at sample 0 of `centres` (sample indices of the frame centres); level is
    each frame's loudness 0..1. Fricatives (much energy above 3 kHz) narrow the opening;
    the balance of 1.5-3.5 kHz against 250-1000 Hz spreads or rounds the lips.
    """
    import numpy as np

    n_fft = 1 << max(8, int(math.ceil(math.log2(0.032 * sr))))
    half = n_fft // 2
    padded = np.concatenate([np.zeros(half, np.float32), audio, np.zeros(half, np.float32)])
    idx = centres[:, None] + np.arange(n_fft)[None, :]  # window centred on each frame: [c - half, c + half)
    frames = padded[np.clip(idx, 0, len(padded) - 1)] * np.hanning(n_fft).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)

    def band(lo, hi):
        sel = (freqs >= lo) & (freqs < min(hi, sr / 2))
        return power[:, sel].sum(axis=1) + 1e-10 if sel.any() else np.full(len(power), 1e-10)

    low, mid, high = band(250, 1000), band(1500, 3500), band(3500, 8000)
    fric = np.clip((10 * np.log10(high / (low + mid)) + 6) / 10, 0, 1)
    balance = 10 * np.log10(mid / low)
    width = np.clip((balance + 8) / 8, -1, 1) * (1 - fric) + 0.5 * fric
    openness = level * (1 - 0.7 * fric)
    return openness.astype(np.float32), width.astype(np.float32)
