"""The speech artifact: speech.wav (mono 16-bit) plus alignment.json, and how to read them.

alignment.json holds every sentence's text and sample range, and every phoneme as
[symbol, start_sample, n_samples]; they drive subtitles, chunk cuts and the mouth.
"""

from __future__ import annotations

import json
import os
import threading
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

    @classmethod
    def from_dict(cls, s: dict) -> Sentence:
        """A sentence as alignment.json holds it."""
        return cls(s["text"], s["paragraph"], s["start"], s["end"], [tuple(w) for w in s["words"]])


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

    @property
    def complete(self) -> bool:
        return True

    def wait_for(self, samples: int) -> None:
        """Until the speech is known up to `samples` (or whole): at once for a finished track."""

    def wait_whole(self) -> SpeechTrack:
        return self

    def known(self) -> tuple[int, bool]:
        """(samples known so far, whether that is all of it)."""
        return self.samples, True

    @classmethod
    def load(cls, wav: Path, alignment: Path) -> "SpeechTrack":
        data = json.loads(alignment.read_text(encoding="utf-8"))
        sentences = [Sentence.from_dict(s) for s in data["sentences"]]
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


# Where the samples of a WAV written by the wave module start: RIFF, fmt and data headers.
WAV_DATA_OFFSET = 44


class LiveTrack(SpeechTrack):
    """The speech while the voice makes it: the samples, sentences and phonemes grow, and a
    reader waits (wait_for) for the part it needs; `finish` makes it the whole track.

    Audio is read through a descriptor opened on the file being written, which stays valid
    when the file is renamed into place. Only samples already announced (grow) are read, and
    each sentence's phonemes are announced with its audio, so a frame made from the part that
    is known equals one made from the whole track.
    """

    def __init__(self, sample_rate: int):
        super().__init__(Path(), sample_rate, 0, [], [], True)
        self._fd: int | None = None
        self._done = False
        self._failed: BaseException | None = None
        self._cond = threading.Condition()

    def attach(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)

    @property
    def complete(self) -> bool:
        return self._done

    def grow(self, samples: int, sentences: tuple = (), phonemes: tuple = (), aligned: bool = True) -> None:
        with self._cond:
            self.phonemes.extend(phonemes)
            self.sentences.extend(sentences)
            self.aligned = self.aligned and aligned
            self.samples = samples
            self._cond.notify_all()

    def finish(self, wav: Path, samples: int) -> None:
        """The file is in place at `wav`: reads go there from now on."""
        with self._cond:
            self.wav, self.samples, self._done = wav, samples, True
            self._let_go()

    def fail(self, reason: BaseException) -> None:
        with self._cond:
            self._failed = reason
            self._let_go()

    def _let_go(self) -> None:
        """The file being written is done with (held: self._cond)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._cond.notify_all()

    def wait_for(self, samples: int) -> None:
        from talkgen.feeds import POLL_S, Stopped

        with self._cond:
            while not self._done and self.samples < samples:
                if self._failed is not None:
                    raise Stopped(str(self._failed)) from self._failed
                self._cond.wait(POLL_S)

    def wait_whole(self) -> SpeechTrack:
        self.wait_for(1 << 62)
        return self

    def known(self) -> tuple[int, bool]:
        with self._cond:
            return self.samples, self._done

    def read(self, start: int, end: int) -> "np.ndarray":
        import numpy as np

        with self._cond:
            if self._failed is not None:
                from talkgen.feeds import Stopped

                raise Stopped(str(self._failed)) from self._failed
            if self._fd is None:
                return super().read(start, end)
            out = np.zeros(max(0, end - start), dtype=np.float32)
            lo, hi = max(start, 0), min(end, self.samples)
            if hi > lo:
                raw = os.pread(self._fd, 2 * (hi - lo), WAV_DATA_OFFSET + 2 * lo)
                out[lo - start : lo - start + len(raw) // 2] = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
            return out


class WavWriter:
    """Appends float32 audio to a 16-bit mono WAV without holding it in memory; flush() makes
    what is written readable (LiveTrack) before the file is closed."""

    def __init__(self, path: Path, sample_rate: int):
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close(); wave leaves a file it was given open
        self._w = wave.open(self._file, "wb")
        self._w.setnchannels(1)
        self._w.setsampwidth(2)
        self._w.setframerate(sample_rate)
        self.samples = 0

    def flush(self) -> None:
        self._file.flush()

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
        try:
            self._w.close()
        finally:
            self._file.close()
