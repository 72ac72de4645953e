"""The transcribe stage with the real bundled Whisper tiny.en and Silero VAD."""

import json
import wave

import numpy as np
import pytest
from conftest import spoken_wav

from talkgen.engines.silero_vad import VAD
from talkgen.engines.stt import load_stt
from talkgen.errors import UsageError
from talkgen.recipe import load_recipe
from talkgen.speech import WavWriter
from talkgen.stages.transcribe import transcribe

pytestmark = pytest.mark.slow

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs back home to sleep."


@pytest.fixture(scope="module")
def stt():
    return load_stt(load_recipe().stt)


def _wer(ref: str, hyp: str) -> float:
    import re

    import jiwer

    def norm(s: str) -> str:
        return " ".join(re.sub(r"[^a-z0-9' ]", " ", s.lower()).split())

    return jiwer.wer(norm(ref), norm(hyp))


def test_the_embedded_voice_is_heard_back(tmp_path, stt):
    wav = spoken_wav(tmp_path / "q.wav", SENTENCE, lead_s=0.8, tail_s=1.0)
    out = transcribe(wav, stt, VAD(), tmp_path / "t.json", piece_s=30, threshold=0.5)
    assert _wer(SENTENCE, out["text"]) <= 0.2, out["text"]
    assert out["language"] == "en"
    assert json.loads((tmp_path / "t.json").read_text())["text"] == out["text"]
    # Leading silence trimmed to the margin before the voice; trailing silence dropped.
    assert 0.3 <= out["speech_start_s"] <= 0.8
    with wave.open(str(wav)) as w:
        total = w.getnframes() / w.getframerate()
    assert out["speech_end_s"] < total - 0.5
    starts = [w[1] for w in out["words"]]
    assert starts == sorted(starts) and starts[0] >= out["speech_start_s"] - 0.1


def test_a_long_recording_goes_in_pieces_cut_at_silences(tmp_path, stt):
    one = spoken_wav(tmp_path / "one.wav", SENTENCE, lead_s=0.3, tail_s=0.9)
    with wave.open(str(one)) as w:
        sr, pcm = w.getframerate(), w.readframes(w.getnframes())
    long = tmp_path / "long.wav"
    with wave.open(str(long), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        for _ in range(10):
            w.writeframes(pcm)
    out = transcribe(long, stt, VAD(), tmp_path / "t.json", piece_s=12, threshold=0.5)
    assert out["pieces"] >= 4
    assert out["text"].lower().count("fox") >= 8
    starts = [w[1] for w in out["words"]]
    assert starts == sorted(starts) and starts[-1] > 40
    assert _wer(" ".join([SENTENCE] * 10), out["text"]) <= 0.25


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_no_speech_is_a_clear_error(tmp_path, stt, kind):
    path = tmp_path / f"{kind}.wav"
    w = WavWriter(path, 16000)
    rng = np.random.default_rng(0)
    w.write(np.zeros(16000 * 3, np.float32) if kind == "silence" else (0.02 * rng.standard_normal(16000 * 3)).astype(np.float32))
    w.close()
    with pytest.raises(UsageError, match=f"no speech found in {kind}.wav"):
        transcribe(path, stt, VAD(), tmp_path / "t.json", piece_s=30, threshold=0.5)
    assert not (tmp_path / "t.json").exists()


def test_a_transcript_of_only_punctuation_counts_as_no_words(tmp_path, stt):
    """A random or confused recognizer may answer "..." or a music sign for real speech; that must
    stop at the transcribe stage with its own message, not later as an empty script."""
    from talkgen.engines.stt import Transcript

    class Punctuation:
        def identity(self) -> dict:
            return {"engine": "punctuation"}

        def transcribe(self, audio) -> Transcript:
            stt.transcribe(audio)  # the real recognizer still runs, so the stage sees real pieces
            return Transcript(text=" ... ♪ ", language="en", words=[("...", 0.0, 0.2)])

    wav = spoken_wav(tmp_path / "q.wav", SENTENCE, lead_s=0.5, tail_s=0.5)
    with pytest.raises(UsageError, match="no speech found in q.wav: the recognizer heard no words"):
        transcribe(wav, Punctuation(), VAD(), tmp_path / "t.json", piece_s=30, threshold=0.5)
    assert not (tmp_path / "t.json").exists()
