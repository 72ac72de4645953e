"""talkgen check on a real render, and on copies of it broken the ways peers' videos break."""

import json
from pathlib import Path

import pytest

import incli
import video_fixtures

SCRIPT = """Hello, and welcome. This is a short test of the whole pipeline, from text to video.

It speaks 2 paragraphs, with about 12 words each; then it stops."""


def talkgen(*args, cwd):
    return incli.talkgen(list(args), cwd)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """One render at 256 px: the smallest size at which the mouth is wide enough to measure lip sync."""
    d = tmp_path_factory.mktemp("check")
    (d / "s.txt").write_text(SCRIPT)
    proc = talkgen("render", "s.txt", "--say", "-o", "out.mp4", "--size", "256", "--job-dir", "job",
                   "render.max_chunk_s=4", "-q", cwd=d)
    assert proc.returncode == 0, proc.stderr
    return d


def findings(proc) -> dict:
    assert "Traceback" not in proc.stderr, proc.stderr
    return {f["name"]: f for f in json.loads(proc.stdout)["findings"]}


@pytest.mark.slow
def test_render_checks_its_own_output_and_reports_it(good):
    report = json.loads((good / "out.report.json").read_text())
    assert report["check"]["ok"] is True
    found = {f["name"]: f for f in report["check"]["findings"]}
    sync = found["lip sync"]["values"]
    assert abs(sync["lag_ms"]) <= 120 and sync["peak"] >= 0.35, sync
    assert found["seams"]["ok"] and found["seams"]["values"]["seams"] >= 2


@pytest.mark.slow
def test_good_render_is_sound_and_its_job_is_found(good):
    proc = talkgen("check", "out.mp4", "--json", cwd=good)
    assert proc.returncode == 0, proc.stdout
    found = findings(proc)
    assert set(found) == {"streams", "decode", "durations", "audio start", "frozen frames", "lip sync", "seams"}
    assert all(f["ok"] for f in found.values())
    assert Path(json.loads(proc.stdout)["job"]).resolve() == (good / "job").resolve()
    assert found["seams"]["values"]["max_lag_ms"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("shift", [-0.5, 0.3, 1.0])
def test_shifted_audio_fails(good, shift):
    bad = good / f"shift{shift}.mp4"
    video_fixtures.shift_audio(good / "out.mp4", bad, shift)
    proc = talkgen("check", bad.name, "--json", cwd=good)
    assert proc.returncode == 1
    found = findings(proc)
    assert not found["lip sync"]["ok"], found["lip sync"]
    lag = found["lip sync"]["values"]["lag_ms"]
    # The measured lag follows the shift: late audio means the mouth moves before the sound.
    assert lag * shift < 0 and abs(abs(lag) - abs(shift) * 1000) <= 120, lag
    assert "seams" not in found  # a copy under another name has no report naming its job
    with_job = findings(talkgen("check", bad.name, "--job-dir", "job", "--json", cwd=good))
    assert not with_job["seams"]["ok"]
    assert not with_job["lip sync"]["ok"] and with_job["lip sync"]["judged"]  # the puppet claims lip sync: judged


@pytest.mark.slow
def test_frozen_picture_during_speech_fails(good):
    bad = good / "frozen.mp4"
    video_fixtures.freeze_video(good / "out.mp4", bad, 25, 75)  # 2 s of one frame while the first sentence is spoken
    proc = talkgen("check", bad.name, "--json", cwd=good)
    found = findings(proc)
    assert proc.returncode == 1 and not found["frozen frames"]["ok"]
    # 51 frames are frozen (2.04 s); x264 keeps refining a still for a few frames, so the
    # decoded pictures become identical a little after the freeze starts (1.68 s here).
    assert 1.5 <= found["frozen frames"]["values"]["longest_frozen_s"] <= 2.04


@pytest.mark.slow
def test_video_without_audio_fails(good):
    chunk = good / "job" / "chunks" / "00000.mp4"  # chunks are video-only by design
    proc = talkgen("check", str(chunk), cwd=good)
    assert proc.returncode == 1
    assert "streams: no audio stream" in proc.stdout.splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("name, fragment", [("missing.mp4", "does not exist"), ("s.txt", "is not a video"),
                                            ("job", "is a folder")])
def test_not_a_video_is_one_line_with_exit_2(good, name, fragment):
    proc = talkgen("check", name, cwd=good)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and fragment in proc.stderr


@pytest.mark.slow
def test_job_dir_that_is_not_a_job_is_one_line(good):
    proc = talkgen("check", "out.mp4", "--job-dir", "job/chunks", cwd=good)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "is not a talkgen job directory" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_render_refuses_success_when_its_check_fails(good, monkeypatch):
    """The whole job is cached; check is handed a copy whose audio is 1 s late, as a broken mux would make."""
    import talkgen.check as check
    from talkgen.errors import TalkgenError
    from talkgen.pipeline import RenderRequest, run
    from talkgen.recipe import load_recipe

    real = check.check_video

    def broken_mux(video, job_dir=None):
        late = video.with_name("late.mp4")
        video_fixtures.shift_audio(video, late, 1.0)
        return real(late, job_dir)

    monkeypatch.setattr(check, "check_video", broken_mux)
    monkeypatch.chdir(good)
    (good / "job" / "check.json").unlink()
    recipe = load_recipe("cpu", ["render.size=256", "render.max_chunk_s=4"])
    with pytest.raises(TalkgenError, match="out.mp4 was written but fails talkgen check .*lip sync"):
        run(RenderRequest(Path("s.txt"), Path("out.mp4"), recipe, job_dir=Path("job"), say=True))
    assert (good / "out.mp4").is_file()
    report = json.loads((good / "out.report.json").read_text())
    assert report["check"]["ok"] is False
    assert all(s["cache"] == "hit" for s in report["stages"])
    (good / "job" / "check.json").unlink()  # leave the job as the other tests expect it


def test_a_figure_and_its_bound_never_read_the_same_when_one_fails_the_other():
    from talkgen.check import figure, judge_sync

    low = judge_sync(40.0, 0.3496, 0.35, 120.0, "the face's mouth and jaw", {})
    assert not low.ok and "best correlation 0.3496, needs 0.35" in low.detail, low.detail
    late = judge_sync(120.4, 0.5, 0.35, 120.0, "r", {})
    assert not late.ok and "moves 120.4 ms after the sound (bound 120 ms" in late.detail, late.detail
    inside = judge_sync(-119.6, 0.351, 0.35, 120.0, "r", {})
    assert inside.ok and "within 119.6 ms (correlation 0.351)" in inside.detail, inside.detail
    assert figure(0.52, 0.35, 2) == "0.52" and figure(0.35, 0.35, 2) == "0.35" and figure(1.04, 1.0, 2) == "1.04"


@pytest.mark.slow
def test_a_back_ends_own_bound_is_used_and_printed_apart(good):
    from talkgen.check import check_video

    peak = next(f for f in check_video(good / "out.mp4").findings if f.name == "lip sync").values["peak"]
    bound = peak + 0.0006  # just above what this render measures (its peak is rounded to 3 decimals)
    found = {f.name: f for f in check_video(good / "out.mp4", expects={"lip_sync": True, "lip_sync_min_peak": bound}).findings}
    sync = found["lip sync"]
    assert not sync.ok and sync.values["min_peak"] == bound
    shown, needs = sync.detail.split("best correlation ")[1].split(", needs ")
    assert float(shown) < float(needs.split(";")[0]), sync.detail


@pytest.mark.slow
def test_a_back_end_that_does_not_claim_lip_sync_is_not_judged(good):
    """tp-test draws frames from random weights: its lip sync is measured and reported, never failed."""
    proc = talkgen("render", "s.txt", "--say", "-o", "tp.mp4", "--size", "256", "--job-dir", "tpjob", "render.engine=tp-test",
                   "render.max_chunk_s=4", "-q", cwd=good)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((good / "tp.report.json").read_text())
    sync = next(f for f in report["check"]["findings"] if f["name"] == "lip sync")
    assert sync["ok"] and not sync["judged"] and sync["detail"].startswith("not judged: render.engine=tp-test does not claim lip sync")
    # A copy with its audio 1 s late, checked against the tp-test job: the seams fail, lip sync is still not judged.
    video_fixtures.shift_audio(good / "tp.mp4", good / "tp-late.mp4", 1.0)
    proc = talkgen("check", "tp-late.mp4", "--job-dir", "tpjob", cwd=good)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = {line[6:21].strip(): line for line in proc.stdout.splitlines()[:-1]}
    assert lines["lip sync"].startswith("skip  ") and "not judged" in lines["lip sync"], proc.stdout
    assert lines["seams"].startswith("fail  ")
    assert proc.stdout.splitlines()[-1].startswith("tp-late.mp4: NOT sound: seams:"), proc.stdout


@pytest.mark.slow
def test_without_a_face_finder_the_mouth_is_the_lower_middle_and_says_why(good, monkeypatch):
    """On OpenCV 5 (no Haar cascades) check still runs, and says why it could not find the mouth."""
    import cv2

    from talkgen import check, face, media

    monkeypatch.delattr(cv2, "CascadeClassifier")
    monkeypatch.setattr(face, "_cascades", {})
    video = next(s for s in media.probe(good / "out.mp4")["streams"] if s["codec_type"] == "video")
    box, how, mouth_px = check._mouth_box(good / "out.mp4", video)
    assert box == (0.55, 0.9, 0.3, 0.7) and mouth_px == 0.0
    assert how.startswith("OpenCV ") and "install opencv-python-headless<5: the lower middle of the frame" in how
