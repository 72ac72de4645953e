"""`talkgen render --live`: the HLS playlist grows while the render runs, and what it ends as is the video.

Watched from outside, as a player would: the playlist and its segments are read while the
render runs, then decoded with ffmpeg and measured against the speech and the video file.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import video_fixtures

from talkgen import media
from talkgen.sync import audio_lag_ms

pytestmark = pytest.mark.slow

SCRIPT = ("Hello, and welcome to the live stream. Each chunk of this video is listed as soon as it is made.\n\n"
          "So it can be watched while the rest is still being rendered. It ends when the render does.")
ARGS = ["--say", "--size", "64", "render.max_chunk_s=1.0", "render.min_chunk_s=0.5", "-q"]


def entries(playlist: Path) -> tuple[list[str], bool]:
    text = playlist.read_text() if playlist.is_file() else ""
    return re.findall(r"^(\S+\.ts)$", text, re.M), "#EXT-X-ENDLIST" in text


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    d = tmp_path_factory.mktemp("live")
    (d / "s.txt").write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, "-m", "talkgen", "render", "s.txt", *ARGS, "-o", "live.mp4", "--job-dir", "livejob",
                             "--live"], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []  # (segments listed, ended, the render still running, its video not yet there), each time the playlist changed
    while proc.poll() is None:
        listed, ended = entries(d / "live.m3u8")
        state = (len(listed), ended, proc.poll() is None, not (d / "live.mp4").exists())
        if not seen or state[:2] != seen[-1][:2]:
            seen.append(state)
        time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    # The same video without --live, in a job of its own: its stages run one after another.
    plain = subprocess.run([sys.executable, "-m", "talkgen", "render", "s.txt", *ARGS, "-o", "plain.mp4", "--job-dir", "plainjob"],
                           cwd=d, capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    return d, seen


def test_segments_are_listed_while_the_render_runs_and_the_list_ends_with_it(live):
    d, seen = live
    first = next(s for s in seen if s[0] > 0)
    assert first[2] and first[3], "the first segment was listed only once the render had ended"
    assert not first[1]
    listed, ended = entries(d / "live.m3u8")
    plan = json.loads((d / "livejob" / "plan.json").read_text())
    assert ended and listed == [f"live.live/{c['index']:05d}.ts" for c in plan["chunks"]]
    assert len(plan["chunks"]) >= 5
    text = (d / "live.m3u8").read_text()
    durations = [float(x) for x in re.findall(r"#EXTINF:([\d.]+),", text)]
    assert durations == [pytest.approx((c["end_frame"] - c["start_frame"]) / 25) for c in plan["chunks"]]
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1))
    assert all(round(x) <= target for x in durations)
    report = json.loads((d / "live.report.json").read_text())
    assert report["overlapped"] and 0 < report["first_chunk_s"] < report["total_wall_s"]
    assert report["artifacts"]["playlist"] == str((d / "live.m3u8").resolve())


def test_the_stream_and_the_file_are_the_video_a_render_without_live_makes(live):
    d, _ = live
    assert (d / "live.mp4").read_bytes() == (d / "plain.mp4").read_bytes()
    assert (d / "livejob" / "plan.json").read_bytes() == (d / "plainjob" / "plan.json").read_bytes()
    assert video_fixtures.frame_hashes(d / "live.m3u8") == video_fixtures.frame_hashes(d / "plain.mp4")
    plain = json.loads((d / "plain.report.json").read_text())
    assert not plain["overlapped"] and "playlist" not in plain["artifacts"]


def _packets(path: Path, kind: str) -> list[float]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", kind, "-show_entries", "packet=pts_time", "-of", "csv=p=0",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return [float(x.strip(",")) for x in out.split()]


def test_sound_and_picture_stay_together_at_every_segment_boundary(live):
    """One AAC encoding, cut between its frames: no gap or overlap between segments, and the sound
    where the picture is, within 40 ms, at every boundary."""
    d, _ = live
    plan = json.loads((d / "livejob" / "plan.json").read_text())
    segments = [d / "live.live" / f"{c['index']:05d}.ts" for c in plan["chunks"]]
    audio = [_packets(s, "a") for s in segments]
    video = [_packets(s, "v") for s in segments]
    sr = json.loads((d / "livejob" / "alignment.json").read_text())["sample_rate"]
    step = 1024 / sr
    pts = [t for seg in audio for t in seg]
    assert all(abs(b - a - step) < 2e-5 for a, b in zip(pts, pts[1:])), "a gap or an overlap in the stream's audio"
    start = video[0][0]
    for c, seg in zip(plan["chunks"], video):
        assert abs(seg[0] - (start + c["start_frame"] / 25)) < 1e-3  # each segment's picture at its place
    # Frame i of the audio holds the speech from sample i * 1024 - 1024 (the encoder's priming first).
    assert abs(pts[0] - (start - step)) < 1e-3
    # And by ear: the decoded stream against the speech, at each boundary.
    rate = 8000
    ref = media.decode_audio(d / "livejob" / "speech.wav", rate)
    got = media.decode_audio(d / "live.m3u8", rate)[round(step * rate):]  # from the first video frame on
    lags = [audio_lag_ms(ref, got, rate, c["end_frame"] * rate // 25, half=rate // 2, search=rate // 10)
            for c in plan["chunks"][:-1]]
    measured = [lag for lag, _ in filter(None, lags)]
    assert len(measured) >= 3 and max(abs(x) for x in measured) <= 40, lags


def test_a_recorded_question_streams_too(tmp_path):
    """transcribe -> reply -> speak -> plan -> render side by side: the reply's sentences go to the
    voice as the LLM writes them, from the transcript the stage before it made."""
    question = Path(__file__).resolve().parents[1] / "examples" / "question.wav"
    proc = subprocess.run([sys.executable, "-m", "talkgen", "render", str(question), "--size", "64", "llm.max_reply_words=12",
                           "-q", "-o", "q.mp4", "--job-dir", "qjob", "--live"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    listed, ended = entries(tmp_path / "q.m3u8")
    assert ended and len(listed) == len(json.loads((tmp_path / "qjob" / "plan.json").read_text())["chunks"])
    report = json.loads((tmp_path / "q.report.json").read_text())
    assert report["overlapped"] and [s["name"] for s in report["stages"]][:3] == ["transcribe", "reply", "speak"]
    assert video_fixtures.frame_hashes(tmp_path / "q.m3u8") == video_fixtures.frame_hashes(tmp_path / "q.mp4")
