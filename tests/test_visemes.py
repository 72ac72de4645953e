"""Mouth shapes from the phoneme alignment (blended across neighbours) and, without one, from the audio."""

import numpy as np

from talkgen.rig import visemes
from talkgen.speech import SpeechTrack, WavWriter

SR = 16000


def _track(tmp_path, phonemes, aligned=True, audio=None):
    wav = tmp_path / "s.wav"
    w = WavWriter(wav, SR)
    total = max(s + n for _, s, n in phonemes)
    w.write(audio if audio is not None else np.zeros(total, np.float32))
    w.close()
    return SpeechTrack(wav, SR, w.samples, [], [tuple(p) for p in phonemes], aligned)


def _seq(*items):
    out, pos = [], 0
    for sym, ms in items:
        n = SR * ms // 1000
        out.append((sym, pos, n))
        pos += n
    return out


def test_a_consonant_between_vowels_takes_their_shape(tmp_path):
    track = _track(tmp_path, _seq(("a", 200), ("t", 60), ("a", 200)))
    t_centre = np.array([0.23])
    openness, _, shut = visemes.from_alignment(track, t_centre)
    assert openness[0] > 0.6 and shut[0] == 0  # "t" alone would be 0.25


def test_shapes_blend_rather_than_switch(tmp_path):
    track = _track(tmp_path, _seq(("i", 300), ("u", 300)))
    times = (np.arange(15) + 0.5) / 25
    _, width, _ = visemes.from_alignment(track, times)
    assert width[2] > 0.8 and width[-2] < -0.8
    assert np.abs(np.diff(width)).max() < 0.8  # from +0.9 to -1.0 over several frames, not one


def test_stress_marks_belong_to_the_next_vowel(tmp_path):
    track = _track(tmp_path, _seq(("b", 80), ("ˈ", 40), ("ɑ", 200)))
    openness, _, shut = visemes.from_alignment(track, np.array([0.10]))  # inside the stress mark
    assert shut[0] < 1 and openness[0] > 0.5


def test_bilabials_shut_the_lips_whatever_their_neighbours(tmp_path):
    track = _track(tmp_path, _seq(("a", 200), ("m", 60), ("a", 200)))
    _, _, shut = visemes.from_alignment(track, np.array([0.23, 0.1]))
    assert shut[0] == 1.0 and shut[1] < 0.01


def _tone(freqs, seconds=0.5):
    t = np.arange(int(SR * seconds)) / SR
    return (sum(np.sin(2 * np.pi * f * t) for f in freqs) * 0.2).astype(np.float32)


def test_without_an_alignment_width_comes_from_the_spectrum():
    centres = np.array([SR // 4])
    level = np.ones(1, np.float32)
    _, ee = visemes.from_spectrum(_tone([300, 2300, 2900]), SR, centres, level)  # front vowel: high second formant
    _, oo = visemes.from_spectrum(_tone([300, 700]), SR, centres, level)  # rounded: energy low
    assert ee[0] > oo[0] + 0.8
    hiss = (np.random.default_rng(0).standard_normal(SR // 2) * 0.1).astype(np.float32)
    hiss = np.convolve(hiss, [1, -1], mode="same").astype(np.float32)  # tilted up, like "s"
    open_vowel, _ = visemes.from_spectrum(_tone([300, 700, 1200]), SR, centres, level)
    open_hiss, _ = visemes.from_spectrum(hiss, SR, centres, level)
    assert open_hiss[0] < 0.6 * open_vowel[0]


def test_the_puppet_reads_the_spectrum_when_the_timing_is_not_an_alignment(tmp_path, make_track):
    from talkgen.engines.puppet import PuppetAvatar
    from talkgen.portrait import load_portrait
    from talkgen.recipe import load_recipe

    track = make_track([("gap", 0.5), ("talk", 2), ("gap", 0.5)])
    engine = PuppetAvatar(load_recipe("cpu", ["render.size=128"]).render, load_portrait(None, 128))
    aligned = engine.motion(track, 0, 75)
    track.aligned = False
    spread = engine.motion(track, 0, 75)
    assert not np.allclose(aligned["jaw"], spread["jaw"])
    assert spread["jaw"][:10].max() < 0.05 and spread["jaw"][20:55].mean() > 0.2
