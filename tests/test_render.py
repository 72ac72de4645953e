"""End to end through the real CLI: Piper speech, the puppet, ffmpeg; small frames to stay quick."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from talkgen import media
from talkgen.sync import audio_lag_ms

import incli
import video_fixtures

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """Hello, and welcome. This is a short test of the whole pipeline, from text to video.

It speaks 2 paragraphs, with about 12 words each; then it stops."""


def talkgen(*args, cwd, check=True):
    proc = incli.talkgen(list(args), cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"talkgen {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    d = tmp_path_factory.mktemp("render")
    (d / "s.txt").write_text(SCRIPT)
    talkgen("render", "s.txt", "--say", "-o", "out.mp4", "--size", "128", "--job-dir", "job", cwd=d)
    return d


def test_outputs_are_a_browser_ready_video_with_subtitles_and_report(rendered):
    info = media.probe(rendered / "out.mp4")
    streams = {s["codec_type"]: s for s in info["streams"]}
    v, a = streams["video"], streams["audio"]
    assert (v["codec_name"], v["pix_fmt"], v["r_frame_rate"], v["width"], v["height"]) == ("h264", "yuv420p", "25/1", 128, 128)
    assert a["codec_name"] == "aac"
    frames = int(v["nb_read_packets"])
    assert abs(float(a["duration"]) - frames / 25) <= 0.04
    srt = (rendered / "out.srt").read_text()
    assert "Hello, and welcome." in srt and "00:00:00," in srt
    report = json.loads((rendered / "out.report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["speak", "plan", "render", "assemble"]
    assert all(s["cache"] == "miss" for s in report["stages"])
    for s in report["stages"]:
        assert s["wall_s"] >= 0 and s["rtf"] >= 0 and s["engine"] and s["device"] == "cpu"
    assert report["cost"]["cost_usd"] == 0 and report["cost"]["device_seconds"] > 0
    assert report["peak_rss"]["talkgen_mb"] > 0
    assert report["output"]["frames"] == frames
    seams = report["seams"]
    assert seams["median_inside"] > 0 and all(s["ratio"] >= 0 for s in seams["per_seam"])
    assert Path(report["artifacts"]["plan"]).is_file()
    plan = json.loads(Path(report["artifacts"]["plan"]).read_text())
    assert plan["total_frames"] == frames
    # Speech is about 8 s here: the mouth must have moved while it was spoken.
    hashes = video_fixtures.frame_hashes(rendered / "out.mp4")
    assert len(set(hashes)) > frames // 2


def test_rerun_does_nothing_and_loads_no_model(rendered):
    code = (
        "import sys; from pathlib import Path; from talkgen.pipeline import RenderRequest, run; "
        "from talkgen.recipe import load_recipe; "
        "r = run(RenderRequest(Path('s.txt'), Path('out.mp4'), load_recipe('cpu', ['render.size=128']), job_dir=Path('job'), say=True)); "
        "print([s['cache'] for s in r['stages']], [m for m in ('onnxruntime', 'piper', 'torch', 'ctranslate2') if m in sys.modules])"
    )
    before = (rendered / "out.mp4").stat().st_mtime_ns
    out = subprocess.run([sys.executable, "-c", code], cwd=rendered, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['hit', 'hit', 'hit', 'hit'] []"
    assert (rendered / "out.mp4").stat().st_mtime_ns == before


def test_an_encoder_setting_is_in_the_render_key(rendered, monkeypatch):
    """x264's settings in media.py, not just render.crf and render.preset: a change re-encodes the chunks."""
    from talkgen.pipeline import RenderRequest, run
    from talkgen.recipe import load_recipe

    monkeypatch.chdir(rendered)

    def render() -> tuple[list[str], dict]:
        rep = run(RenderRequest(Path("s.txt"), Path("out.mp4"), load_recipe("cpu", ["render.size=128"]), job_dir=Path("job"), say=True))
        manifest = json.loads((rendered / "job" / "manifest.json").read_text())
        return [s["cache"] for s in rep["stages"]], manifest["stages"]["render"]["outputs"]

    before = json.loads((rendered / "job" / "manifest.json").read_text())["stages"]["render"]["outputs"]
    with monkeypatch.context() as patch:
        patch.setitem(media.CHUNK_VIDEO, "keyframe_s", 1)
        caches, chunks = render()
        assert caches == ["hit", "hit", "miss", "miss"]
        assert chunks.keys() == before.keys() and all(chunks[k] != before[k] for k in chunks)  # every chunk encoded again
        assert render()[0] == ["hit"] * 4  # nothing changed: all cached
    caches, chunks = render()
    assert caches == ["hit", "hit", "miss", "miss"] and chunks == before  # back to the first settings, bit for bit
    with monkeypatch.context() as patch:
        patch.setitem(media.FINAL_AUDIO, "bitrate", "96k")  # the speech's encoding is the assemble stage's alone
        assert render()[0] == ["hit", "hit", "hit", "miss"]


def test_changing_size_reuses_the_speech(rendered):
    talkgen("render", "s.txt", "--say", "-o", "out.mp4", "--size", "96", "--job-dir", "job", cwd=rendered)
    report = json.loads((rendered / "out.report.json").read_text())
    assert [s["cache"] for s in report["stages"]] == ["hit", "hit", "miss", "miss"]
    assert media.probe(rendered / "out.mp4")["streams"][0]["width"] == 96


def test_force_and_from(rendered):
    talkgen("render", "s.txt", "--say", "-o", "out.mp4", "--size", "96", "--job-dir", "job", cwd=rendered)
    talkgen("render", "s.txt", "--say", "-o", "out.mp4", "--size", "96", "--job-dir", "job", "--force", "plan", cwd=rendered)
    report = json.loads((rendered / "out.report.json").read_text())
    # The plan is redone; it comes out the same, so the render stays cached.
    assert [s["cache"] for s in report["stages"]] == ["hit", "miss", "hit", "hit"]
    talkgen("render", "s.txt", "--say", "-o", "out.mp4", "--size", "96", "--job-dir", "job", "--from", "render", cwd=rendered)
    report = json.loads((rendered / "out.report.json").read_text())
    assert [s["cache"] for s in report["stages"]] == ["hit", "hit", "miss", "miss"]
    assert report["stages"][2]["detail"]["reused_chunks"] == 0  # every chunk was rendered again


LONG = " ".join(
    f"Sentence number {i} says a few more words, and then it pauses." + ("\n\n" if i % 4 == 3 else "") for i in range(12)
)


def _chunk_count(job: Path) -> int:
    d = job / "chunks"
    # Finished chunk files only: pathlib's glob also matches the hidden temporary files of chunks in flight.
    return len([p for p in d.glob("*.mp4") if not p.name.startswith(".")]) if d.is_dir() else 0


# LONG said in chunks of 0.5-1 s: over 30 of them, at 64 px (what is checked is the same at any size).
LONG_ARGS = ["render", "s.txt", "--say", "--size", "64", "render.max_chunk_s=1.0", "render.min_chunk_s=0.5", "-q"]


@pytest.fixture(scope="module")
def long_render(tmp_path_factory):
    """LONG rendered once, uninterrupted (whole.mp4, job folder whole): the tests below only read it."""
    d = tmp_path_factory.mktemp("long")
    (d / "s.txt").write_text(LONG)
    talkgen(*LONG_ARGS, "-o", "whole.mp4", "--job-dir", "whole", cwd=d)
    return d


def test_killed_render_resumes_at_the_first_missing_chunk_and_matches(long_render):
    d, args = long_render, LONG_ARGS
    proc = subprocess.Popen([sys.executable, "-m", "talkgen", *args, "-o", "cut.mp4", "--job-dir", "cut"], cwd=d,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _chunk_count(d / "cut") < 5 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _chunk_count(d / "cut")
    plan = json.loads((d / "whole" / "plan.json").read_text())
    assert 5 <= killed_at < len(plan["chunks"]), "the kill must land in the middle of the render"
    assert not (d / "cut.mp4").exists()
    # Resumed with a longer rank timeout, as after a rank that went silent: a setting that says
    # how to run, not what the frames are, so the finished chunks are kept.
    # A process of its own, as a user's resume is: run in this process it starts at once, while
    # the killed render's orphaned ffmpeg encoders may still be writing their temporary chunks.
    resumed = subprocess.run([sys.executable, "-m", "talkgen", *args, "render.collective_timeout_s=120", "-o", "cut.mp4",
                              "--job-dir", "cut"], cwd=d, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not list((d / "cut").rglob(".*.tmp-*")), "half-written files were left behind"
    report = json.loads((d / "cut.report.json").read_text())
    render = next(s for s in report["stages"] if s["name"] == "render")
    assert render["detail"]["reused_chunks"] >= killed_at - 1  # a chunk being renamed at the kill may be redone
    assert video_fixtures.frame_hashes(d / "cut.mp4") == video_fixtures.frame_hashes(d / "whole.mp4")
    a = media.decode_audio(d / "cut.mp4", 16000)
    b = media.decode_audio(d / "whole.mp4", 16000)
    assert len(a) == len(b) and np.allclose(a, b, atol=1e-4)


def test_audio_lines_up_with_the_speech_at_every_seam(long_render):
    """Measure, at each of 30+ chunk joins, where the final file's audio sits against speech.wav."""
    job = long_render / "whole"
    plan = json.loads((job / "plan.json").read_text())
    seams = [c["end_frame"] for c in plan["chunks"][:-1]]
    assert len(seams) >= 30
    report = json.loads((long_render / "whole.report.json").read_text())
    assert [s["frame"] for s in report["seams"]["per_seam"]] == seams
    sr = 8000  # enough to resolve well under a frame, and quick to correlate
    ref = media.decode_audio(job / "speech.wav", sr)
    got = media.decode_audio(long_render / "whole.mp4", sr)
    lags = [audio_lag_ms(ref, got, sr, f * sr // 25, half=sr // 2, search=sr // 10)[0] for f in seams]
    assert max(abs(x) for x in lags) <= 40, lags
    # The video side: the joined file holds exactly the chunks' frames, in order, at the planned indices.
    chunk_hashes = []
    for c in plan["chunks"]:
        h = video_fixtures.frame_hashes(job / "chunks" / f"{c['index']:05d}.mp4")
        assert len(h) == c["end_frame"] - c["start_frame"]
        chunk_hashes += h
    assert video_fixtures.frame_hashes(long_render / "whole.mp4") == chunk_hashes
