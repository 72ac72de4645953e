"""Asking a question end to end: transcribe -> reply -> speak -> render, offline."""

import json
import socket
from pathlib import Path

import pytest

from talkgen import media
from talkgen.pipeline import RenderRequest, run
from talkgen.portrait import DEFAULT_PORTRAIT
from talkgen.recipe import load_recipe

import video_fixtures
from incli import talkgen

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ROOT / "examples" / "question.wav"


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach another host fails the test (local AF_UNIX sockets stay allowed)."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise NetworkUsed(f"network access to {address}")
        return real_connect(self, address)

    def refuse(*args, **kwargs):
        raise NetworkUsed(f"name lookup {args[:1]}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _caches(report):
    return {s["name"]: s["cache"] for s in report["stages"]}


@pytest.mark.slow
def test_a_recorded_question_is_answered_without_the_network(tmp_path, no_network):
    recipe = load_recipe("cpu", ["render.size=96", "llm.max_reply_words=15"])
    report = run(RenderRequest(QUESTION, tmp_path / "a.mp4", recipe, job_dir=tmp_path / "job"))
    assert list(_caches(report)) == ["transcribe", "reply", "speak", "plan", "render", "assemble"]
    transcript = json.loads((tmp_path / "job" / "transcript.json").read_text())
    assert "tallest mountain" in transcript["text"].lower()
    answer = report["conversation"][0]["reply"]
    assert answer and len(answer.split()) <= 15
    assert report["conversation"][0]["question"] == transcript["text"]
    # The answer is what was spoken and subtitled.
    srt = (tmp_path / "a.srt").read_text()
    assert answer.split()[0].strip(",.!?") in srt
    info = media.probe(tmp_path / "a.mp4")
    assert {s["codec_type"] for s in info["streams"]} >= {"video", "audio"}

    # A new persona redoes the reply and everything after it, and nothing before it.
    recipe.llm.persona = "a pirate captain who loves the sea"
    report = run(RenderRequest(QUESTION, tmp_path / "a.mp4", recipe, job_dir=tmp_path / "job"))
    assert _caches(report) == {"transcribe": "hit", "reply": "miss", "speak": "miss", "plan": "miss", "render": "miss", "assemble": "miss"}
    # And the same settings again redo nothing.
    report = run(RenderRequest(QUESTION, tmp_path / "a.mp4", recipe, job_dir=tmp_path / "job"))
    assert set(_caches(report).values()) == {"hit"}


def _cli(args, cwd):
    return talkgen(args, cwd)


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("q.wav", b"What is the tallest mountain?\n", "holds text, not audio: rename it to .txt"),
        ("q.wav", b"", "is not audio that ffmpeg can read"),
        ("q.wav", bytes(range(256)) * 40, "is not audio that ffmpeg can read"),
        ("q.mp4", b"What is the tallest mountain?\n", "holds text, not audio: rename it to .txt"),
        ("silent.mov", "video", "silent.mov is a video with no audio stream"),
        ("silent.mp4", "video", "silent.mp4 is a video with no audio stream"),
    ],
)
def test_wrong_kind_of_input(tmp_path, name, content, fragment):
    if content == "video":
        video_fixtures.still_video(DEFAULT_PORTRAIT, tmp_path / name, 2.0)
    else:
        (tmp_path / name).write_bytes(content)
    proc = _cli(["render", name, "-o", "o.mp4"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert fragment in " ".join(proc.stderr.split())
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_a_silent_recording_says_no_speech(tmp_path):
    from talkgen.speech import WavWriter

    w = WavWriter(tmp_path / "quiet.wav", 16000)
    w.silence(16000 * 2)
    w.close()
    proc = _cli(["render", "quiet.wav", "-o", "o.mp4"], tmp_path)
    assert proc.returncode == 2
    assert "no speech found in quiet.wav" in proc.stderr
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("name", ["question.mov", "question.mkv", "recorded.txt"])
def test_a_file_with_an_audio_stream_is_a_recording_whatever_its_name(tmp_path, name):
    from talkgen.inputs import input_kind

    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_bytes(QUESTION.read_bytes())  # a WAV under a text name
    else:
        video_fixtures.still_video(DEFAULT_PORTRAIT, path, 6.6, audio=QUESTION)
    assert input_kind(path) == "audio"


def test_a_picture_given_as_a_script_is_not_called_a_video(tmp_path):
    png = tmp_path / "face.png"
    png.write_bytes((DEFAULT_PORTRAIT).read_bytes())
    proc = _cli(["render", "face.png", "--say", "-o", "o.mp4"], tmp_path)
    assert proc.returncode == 2 and "looks like a binary file, not text" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_question_recorded_as_a_phone_video_is_heard(tmp_path):
    """Video with a spoken question, as a phone records it: its audio track is the question."""
    video_fixtures.still_video(DEFAULT_PORTRAIT, tmp_path / "question.mp4", 6.6, audio=QUESTION)
    proc = _cli(["render", "question.mp4", "--say", "-o", "o.mp4", "--size", "96", "--job-dir", "job", "-q"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    transcript = json.loads((tmp_path / "job" / "transcript.json").read_text())
    assert "tallest mountain" in transcript["text"].lower()
    assert {s["codec_type"] for s in media.probe(tmp_path / "o.mp4")["streams"]} >= {"video", "audio"}
