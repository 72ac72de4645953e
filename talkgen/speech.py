"""The speech artifact: speech.wav (mono 16-bit) plus alignment.json, and how to read them.

alignment.json holds every sentence's text and sample range, and every phoneme as
[symbol, start_sample, n_samples]; they drive subtitles, chunk cuts and the mouth.
"""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# A video frame's slice of speech quieter than this (RMS, dBFS) is a pause: the planner cuts
# there, the puppet's mouth rests there, and talkgen check counts only louder frames as speech.
SILENCE_DB = -40.0
# Phoneme-stream symbols that are pauses, sentence marks or word breaks, not sounds.
SILENT_SYMBOLS = frozenset({"^", "$", " ", ",", ".", "!", "?", ";", ":", "…", "-"})


@dataclass
class Sentence:
    text: str
    paragraph: int
    start: int  # samples
    end: int
    words: list[tuple[str, int, int]]  # (word, start, end) in samples


@dataclass
class SpeechTrack:
    wav: Path
    sample_rate: int
    samples: int
    sentences: list[Sentence]
    phonemes: list[tuple[str, int, int]]
    # False when the phoneme times are spread over the audio rather than measured (F5-TTS).
    aligned: bool = True

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate

    @classmethod
    def load(cls, wav: Path, alignment: Path) -> "SpeechTrack":
        data = json.loads(alignment.read_text(encoding="utf-8"))
        sentences = [
            Sentence(s["text"], s["paragraph"], s["start"], s["end"], [tuple(w) for w in s["words"]])
            for s in data["sentences"]
        ]
        return cls(wav, data["sample_rate"], data["samples"], sentences, [tuple(p) for p in data["phonemes"]],
                   bool(data.get("aligned", True)))

    def read(self, start: int, end: int) -> "np.ndarray":
        """Samples [start, end) as float32, zero-padded outside the recording."""
        import numpy as np

        out = np.zeros(max(0, end - start), dtype=np.float32)
        lo, hi = max(start, 0), min(end, self.samples)
        if hi <= lo:
            return out
        with wave.open(str(self.wav), "rb") as w:
            w.setpos(lo)
            raw = w.readframes(hi - lo)
        out[lo - start : hi - start] = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        return out


class WavWriter:
    """Appends float32 audio to a 16-bit mono WAV without holding it in memory."""

    def __init__(self, path: Path, sample_rate: int):
        self._w = wave.open(str(path), "wb")
        self._w.setnchannels(1)
        self._w.setsampwidth(2)
        self._w.setframerate(sample_rate)
        self.samples = 0

    def write(self, audio: "np.ndarray") -> None:
        import numpy as np

        pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
        self._w.writeframes(pcm.tobytes())
        self.samples += len(pcm)

    def silence(self, n: int) -> None:
        import numpy as np

        if n > 0:
            self.write(np.zeros(n, dtype=np.float32))

    def close(self) -> None:
        self._w.close()
