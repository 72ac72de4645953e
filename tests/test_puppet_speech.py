"""The puppet's mouth against the voice, measured from a rendered file alone (Piper, default portrait, 512 px).

The mouth box is the finder's on the video's first frame (the mouth is closed there); a
pixel is "dark" when it is under 0.45 of that box's median brightness on the first frame.
"""

import numpy as np
import pytest
from incli import talkgen

from talkgen import media
from talkgen.face import find_landmarks
from talkgen.speech import SILENCE_DB, SpeechTrack
from talkgen.stages.plan import frame_energy_db

pytestmark = pytest.mark.slow

SCRIPT = """Hello, and welcome. My mother bought a map of Bombay, and we ate apples by the pool.

Who knew? We will see a few people move south, but most of them stay put. Please be brief."""
SIZE, FPS = 512, 25


@pytest.fixture(scope="module")
def render(tmp_path_factory):
    d = tmp_path_factory.mktemp("speech")
    (d / "s.txt").write_text(SCRIPT)
    proc = talkgen(["render", "s.txt", "--say", "-o", "out.mp4", "--size", str(SIZE), "--job-dir", "job", "-q"], d)
    assert proc.returncode == 0, proc.stderr
    video = d / "out.mp4"
    m = find_landmarks(media.first_frame(video, SIZE, SIZE))
    box = (slice(int(m.upper_lip_top), int(np.ceil(m.lower_lip_bottom)) + 1),
           slice(int(m.mouth_left[0]), int(np.ceil(m.mouth_right[0])) + 1))
    frames = np.stack([f[box] for f in media.gray_frames(video, SIZE)]).astype(np.float32)
    dark = (frames < 0.45 * np.median(frames[0])).mean(axis=(1, 2))
    track = SpeechTrack.load(d / "job" / "speech.wav", d / "job" / "alignment.json")
    return dark, track, frame_energy_db(track, FPS, len(dark))


def test_the_dark_mouth_follows_the_voice(render):
    dark, _, level = render
    assert np.corrcoef(dark, np.maximum(level, -60))[0, 1] >= 0.6


def test_the_mouth_opens_wide_on_the_loudest_speech(render):
    dark, _, level = render
    speech = np.sort(dark[level > SILENCE_DB])
    assert speech[-len(speech) // 10 :].mean() >= 0.10


def test_lips_meet_on_bilabials_and_in_silence(render):
    dark, track, level = render
    centres = (np.arange(len(dark)) + 0.5) * track.sample_rate / FPS
    bilabial = np.zeros(len(dark), bool)
    for symbol, start, n in track.phonemes:
        if symbol in ("m", "b", "p"):
            bilabial |= (centres >= start) & (centres < start + n)
    assert bilabial.sum() >= 10
    assert dark[bilabial].max() < 0.01
    # Silence: this frame and both neighbours below the speech threshold (a pause, not a stop consonant).
    quiet = level < SILENCE_DB
    silence = quiet & np.roll(quiet, 1) & np.roll(quiet, -1)
    assert silence.sum() >= 20 and dark[silence].max() < 0.01
