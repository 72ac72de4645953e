"""The openai-whisper engine with a tiny random model saved in the large-v3 checkpoint layout.

Random weights say nothing useful, so the tests assert on what the engine guarantees:
the real loader takes the file, the output has the engine's shape, word times lie inside
the audio, and the same audio gives the same result.
"""

from dataclasses import asdict

import pytest
import torch
from conftest import spoken_wav

from talkgen import media
from talkgen.engines.stt import load_stt
from talkgen.errors import TalkgenError
from talkgen.recipe import load_recipe


@pytest.fixture(scope="module")
def tiny_large_v3(tmp_path_factory):
    from whisper.model import ModelDimensions, Whisper

    # large-v3's layout: 128 mel bins and the 51866-token multilingual vocabulary; everything else tiny.
    # A text context of 64, not 448: random weights never say their end of text, so each 30 s window
    # decodes to half the context (224 tokens a window took most of a minute on 2 loaded cores; 32 now).
    dims = ModelDimensions(n_mels=128, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51866, n_text_ctx=64, n_text_state=64, n_text_head=2, n_text_layer=1)
    torch.manual_seed(0)
    model = Whisper(dims)
    path = tmp_path_factory.mktemp("whisper") / "tiny-large-v3.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


@pytest.mark.slow
def test_the_engine_loads_a_checkpoint_and_transcribes_deterministically(tmp_path, tiny_large_v3):
    config = load_recipe("cpu", ["stt.engine=openai-whisper", f"stt.model={tiny_large_v3}", "stt.beam_size=1"]).stt
    stt = load_stt(config)
    assert stt.model.dims.n_mels == 128 and stt.model.is_multilingual
    audio = media.decode_audio(spoken_wav(tmp_path / "q.wav", "Hello there, how are you today?"), 16000)[: 16000 * 3]
    a = stt.transcribe(audio)
    b = stt.transcribe(audio)
    assert (a.text, a.words) == (b.text, b.words)
    assert isinstance(a.text, str) and a.language == "en"
    assert all(0 <= start <= end <= len(audio) / 16000 + 0.5 for _, start, end in a.words)
    assert stt.identity()["engine"] == "openai-whisper"


def test_an_official_name_needs_the_pulled_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKGEN_WEIGHTS", str(tmp_path / "weights"))
    config = load_recipe("cpu", ["stt.engine=openai-whisper", "stt.model=large-v3"]).stt
    with pytest.raises(TalkgenError, match="whisper-large-v3 is not downloaded: run talkgen weights pull --recipe gpu-1x"):
        load_stt(config, "gpu-1x")
    # A file that is there but not the right one is refused by its sha256.
    (tmp_path / "weights" / "whisper").mkdir(parents=True)
    (tmp_path / "weights" / "whisper" / "large-v3.pt").write_bytes(b"not the model")
    with pytest.raises(TalkgenError, match="does not match its sha256"):
        load_stt(config, "gpu-1x")


@pytest.mark.slow
def test_render_routes_a_recording_through_openai_whisper(tmp_path, tiny_large_v3):
    """The transcribe stage runs the recipe's engine. A random model says random words or none
    (Whisper's temperature fallback samples), so either the video is made with the openai-whisper
    stage in its report, or it stops in one line saying no words were heard."""
    import json

    from conftest import ROOT
    from incli import talkgen

    proc = talkgen(["render", str(ROOT / "examples" / "question.wav"), "--say", "-q", "-o", "o.mp4", "stt.engine=openai-whisper",
                    f"stt.model={tiny_large_v3}", "stt.beam_size=1", "render.size=128"], tmp_path)
    if proc.returncode == 0:
        report = json.loads((tmp_path / "o.report.json").read_text())
        stage = next(s for s in report["stages"] if s["name"] == "transcribe")
        assert stage["engine"] == "openai-whisper" and stage["cache"] == "miss"
    else:
        assert proc.returncode == 2 and proc.stderr.strip() == "error: no speech found in question.wav: the recognizer heard no words"
