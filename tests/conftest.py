import json
from pathlib import Path

import numpy as np
import pytest

from talkgen.speech import SpeechTrack, WavWriter

ROOT = Path(__file__).resolve().parents[1]


def synthetic_track(directory: Path, pattern: list[tuple[str, float]], sr: int = 16000, seed: int = 0) -> SpeechTrack:
    """A speech track of voiced-like noise bursts ("talk") and silences ("gap").

    Each talk segment is one sentence whose single word spans it, with a phoneme
    stream of open vowels, so the track has everything a real one has.
    """
    rng = np.random.default_rng(seed)
    wav = directory / "speech.wav"
    w = WavWriter(wav, sr)
    sentences, phonemes = [], []
    for kind, seconds in pattern:
        n = int(seconds * sr)
        if kind == "gap":
            w.silence(n)
            continue
        start = w.samples
        t = np.arange(n) / sr
        env = np.abs(np.sin(np.pi * 4 * t)) * 0.5 + 0.2
        w.write((env * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32) * 0.6)
        step = sr // 10
        for k, pos in enumerate(range(start, start + n, step)):
            phonemes.append(["a" if k % 2 else "m", pos, min(step, start + n - pos)])
        sentences.append({"text": f"talk {len(sentences)}", "spoken": "", "paragraph": 0, "start": start, "end": w.samples,
                          "words": [["talk", start, start + n // 2], [str(len(sentences)), start + n // 2, w.samples]]})
    w.close()
    alignment = directory / "alignment.json"
    alignment.write_text(json.dumps({"sample_rate": sr, "samples": w.samples, "sentences": sentences, "phonemes": phonemes}))
    return SpeechTrack.load(wav, alignment)


@pytest.fixture
def make_track(tmp_path):
    def make(pattern, **kw):
        return synthetic_track(tmp_path, pattern, **kw)

    return make
