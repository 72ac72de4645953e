"""The bundled Piper voice as talkgen loads it: its graph optimised once and kept."""

from talkgen.engines import piper_tts
from talkgen.recipe import TTSConfig

TEXT = ["Hello!", "The tallest mountain in the world is Mount Everest, 8,849 metres high."]


def said(tts) -> list:
    return [(part.audio.tobytes(), part.phonemes) for text in TEXT for part in tts.speak(text)]


def test_a_voice_from_the_kept_optimised_graph_says_what_the_voice_that_optimised_it_says(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKGEN_CACHE", str(tmp_path))
    first = piper_tts.PiperTTS(TTSConfig())
    first.ready()  # patches the graph, optimises it and keeps it
    assert first._model is None and first._optimized.is_file()
    made = said(first)
    again = piper_tts.PiperTTS(TTSConfig())
    again.ready(threads=1)  # from the kept file, with no optimisation of its own, on one thread
    assert said(again) == made
    again.fresh()  # a new session for the next job: the same file again, on every core
    again.ready(threads=0)
    assert said(again) == made
    again.fresh()  # a live render's session: its idle threads sleep instead of spinning
    again.ready(threads=0, spin=False)
    assert again._how == (0, False) and said(again) == made


def test_a_cache_that_cannot_be_written_still_gives_a_voice(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("TALKGEN_CACHE", str(blocked))
    tts = piper_tts.PiperTTS(TTSConfig())
    tts.ready()
    assert tts._model is not None and not tts._optimized.exists()
    first = said(tts)
    tts.fresh()
    assert said(tts) == first


def test_graphs_kept_for_another_version_of_the_voice_go_when_this_one_is_kept(tmp_path, monkeypatch):
    """An upgrade (talkgen, piper, ONNX Runtime) makes new graphs; the old ones (63 MB each) go,
    a voice's graphs for another seed stay."""
    monkeypatch.setenv("TALKGEN_CACHE", str(tmp_path))
    model, _ = piper_tts._voice_files(TTSConfig().voice)
    folder = tmp_path / "piper"
    folder.mkdir()
    stem = model.stem
    older = [folder / f"{stem}-1-2-seed0-1.0.0-0123456789abcdef.onnx",
             folder / f"{stem}-1-2-seed0-1.0.0-0123456789abcdef-ort1.0.0-abc.optimized.onnx"]
    other_seed = folder / f"{stem}-1-2-seed7-1.0.0-0123456789abcdef.onnx"
    other_voice = folder / f"{stem}-2-1-2-seed0-1.0.0-0123456789abcdef.onnx"  # a voice named like this one, and more
    for path in [*older, other_seed, other_voice]:
        path.write_bytes(b"graph")
    tts = piper_tts.PiperTTS(TTSConfig())
    tts.ready()
    assert not any(path.exists() for path in older) and other_seed.exists() and other_voice.exists()
    kept = sorted(p.name for p in folder.glob(f"{stem}-*-seed0-*") if p != other_voice)
    assert kept == sorted([f"{piper_tts._model_tag(model, 0)}.onnx", tts._optimized.name])
