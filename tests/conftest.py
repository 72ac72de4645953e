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


MAX_WORKERS = 4


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: without it installed, not called
def pytest_xdist_auto_num_workers(config) -> int | None:
    """A run of one test file runs in the test process: --dist loadfile would give it to one worker
    anyway, and the workers would only add their start. Otherwise one worker per core, at most
    MAX_WORKERS: each loads its own models (up to about 2 GiB with a chat or a server)."""
    import os

    files = {str(arg).split("::")[0] for arg in config.args}
    if len(files) == 1 and next(iter(files)).endswith(".py"):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_WORKERS))


@pytest.fixture(scope="session", autouse=True)
def no_user_config(tmp_path_factory):
    """Nothing of the developer's own talkgen config (an avatar Python set once) reaches the tests."""
    import os

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("TALKGEN_") and k.endswith("_PYTHON")}
    old = os.environ.get("TALKGEN_CONFIG")
    os.environ["TALKGEN_CONFIG"] = str(tmp_path_factory.mktemp("user-config") / "config.yaml")
    yield
    os.environ.update(saved)
    if old is None:
        os.environ.pop("TALKGEN_CONFIG", None)
    else:
        os.environ["TALKGEN_CONFIG"] = old


@pytest.fixture(scope="session", autouse=True)
def talkgen_cache(tmp_path_factory):
    """A cache of talkgen's own per test session: the GGUF conversion runs once, never in ~/.cache."""
    import os

    path = tmp_path_factory.mktemp("talkgen-cache")
    old = os.environ.get("TALKGEN_CACHE")
    os.environ["TALKGEN_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("TALKGEN_CACHE", None)
    else:
        os.environ["TALKGEN_CACHE"] = old


def spoken_wav(path: Path, text: str, lead_s: float = 0.8, tail_s: float = 1.0, sr_out: int = 16000) -> Path:
    """`text` spoken by the embedded Piper voice, with silence around it, as a 16-bit WAV."""
    from talkgen import media
    from talkgen.engines.tts import load_tts
    from talkgen.recipe import load_recipe
    from talkgen.text.normalize import normalize

    tts = load_tts(load_recipe().tts)
    tmp = path.with_suffix(".22k.wav")
    w = WavWriter(tmp, tts.sample_rate)
    w.silence(int(lead_s * tts.sample_rate))
    for part in tts.speak(normalize(text)):
        w.write(part.audio * 0.8)
    w.silence(int(tail_s * tts.sample_rate))
    w.close()
    audio = media.decode_audio(tmp, sr_out)
    out = WavWriter(path, sr_out)
    out.write(audio)
    out.close()
    tmp.unlink()
    return path


@pytest.fixture
def make_track(tmp_path):
    def make(pattern, **kw):
        return synthetic_track(tmp_path, pattern, **kw)

    return make
