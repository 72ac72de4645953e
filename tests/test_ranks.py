"""Rendering across torchrun ranks on CPU (gloo), with the tp-test back end."""

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

import incli
import video_fixtures

HERE = Path(__file__).resolve().parent
SCRIPT = " ".join(f"Sentence {i} is spoken here, and then a short pause follows." for i in range(5))


@pytest.mark.slow
def test_two_ranks_compute_what_one_computes(tmp_path):
    """Column- and row-parallel halves plus an all-reduce equal the whole layer, within float tolerance."""
    sys.path.insert(0, str(HERE))
    from tp_equality_worker import outputs

    (tmp_path / "one").mkdir()
    one = outputs(1, 0, tmp_path / "one")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(HERE / "tp_equality_worker.py"), str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    two_forward = np.load(tmp_path / "forward.npy")
    assert np.allclose(two_forward, one["forward"], rtol=1e-5, atol=1e-5)
    assert np.allclose(json.loads((tmp_path / "state.json").read_text()), one["state"], atol=1e-5)
    frames = np.load(tmp_path / "frames.npy").astype(int)
    assert np.abs(frames - one["frames"].astype(int)).max() <= 1  # uint8 rounding of near-equal floats


def talkgen(args, cwd):
    return incli.talkgen(args, cwd)


ARGS = ["render", "s.txt", "--say", "--size", "96", "render.engine=tp-test", "render.max_chunk_s=1", "render.min_chunk_s=0.5", "-q"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    (d / "s.txt").write_text(SCRIPT)
    proc = talkgen([*ARGS, "render.nproc=2", "-o", "whole.mp4", "--job-dir", "whole"], d)
    assert proc.returncode == 0, proc.stderr
    return d


@pytest.mark.slow
def test_two_ranks_render_a_real_video_like_one_rank(whole):
    info = media.probe(whole / "whole.mp4")
    report = json.loads((whole / "whole.report.json").read_text())
    render = next(s for s in report["stages"] if s["name"] == "render")
    assert render["engine"] == "tp-test" and render["detail"]["ranks"] == 2
    # Where the time went: the ranks' start-up (the back end's load within it), the frames, the waits on x264.
    d = render["detail"]
    assert d["startup_s"] > d["load_s"] > 0 and d["backend_compute_s"] > 0 and d["encode_wait_s"] >= 0
    assert 0 < d["overhead_ratio"] < 1
    plan = json.loads((whole / "whole" / "plan.json").read_text())
    assert all((c["end_frame"] - c["start_frame"]) % 4 == 0 for c in plan["chunks"])  # the back end's clip length
    assert int(info["streams"][0]["nb_read_packets"]) == plan["total_frames"]
    # The same job in one process (world size 1) gives the same frames, give or take a rounding step.
    # On one thread, as a rank runs (OMP_NUM_THREADS=1, ranks/interpreter.py): on two, torch sums a
    # frame's products in another order, and one frame of this speech comes out a rounding step apart.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        proc = talkgen([*ARGS, "render.nproc=1", "-o", "one.mp4", "--job-dir", "one"], whole)
    finally:
        torch.set_num_threads(threads)
    assert proc.returncode == 0, proc.stderr
    a = media.decode_audio(whole / "one.mp4", 8000)
    b = media.decode_audio(whole / "whole.mp4", 8000)
    assert np.allclose(a, b, atol=1e-4)
    one = next(s for s in json.loads((whole / "one.report.json").read_text())["stages"] if s["name"] == "render")["detail"]
    assert one["startup_s"] == one["load_s"] > 0 and one["backend_compute_s"] > 0  # in process: no launch
    assert len(video_fixtures.frame_hashes(whole / "one.mp4")) == len(video_fixtures.frame_hashes(whole / "whole.mp4"))
    # One rank through the launcher (render.launcher=torchrun) is the same job as in process.
    proc = talkgen([*ARGS, "render.nproc=1", "render.launcher=torchrun", "-o", "one-ranked.mp4", "--job-dir", "one-ranked"], whole)
    assert proc.returncode == 0, proc.stderr
    assert (whole / "one-ranked" / "ranks" / "logs").is_dir()  # it went through torchrun
    assert video_fixtures.frame_hashes(whole / "one-ranked.mp4") == video_fixtures.frame_hashes(whole / "one.mp4")


@pytest.mark.slow
def test_a_finished_distributed_job_reruns_without_launching(whole):
    proc = talkgen([*ARGS, "render.nproc=2", "-o", "whole.mp4", "--job-dir", "whole"], whole)
    assert proc.returncode == 0
    report = json.loads((whole / "whole.report.json").read_text())
    assert {s["cache"] for s in report["stages"]} == {"hit"}


def _workers(parent_pid: int) -> list[tuple[int, int]]:
    """(pid, rank) of the torchrun rank processes under `parent_pid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            if b"talkgen.ranks.worker" not in cmd:
                continue
            env = dict(item.split(b"=", 1) for item in (entry / "environ").read_bytes().split(b"\0") if b"=" in item)
            if env.get(b"TORCHELASTIC_RUN_ID") is not None:
                out.append((int(entry.name), int(env[b"RANK"])))
        except (OSError, ValueError):
            continue
    return out


@pytest.mark.slow
def test_a_killed_rank_stops_the_job_with_one_line_and_the_rerun_resumes(whole, tmp_path):
    (tmp_path / "s.txt").write_text(SCRIPT)
    args = [*ARGS, "render.nproc=2", "render.collective_timeout_s=20", "-o", "cut.mp4", "--job-dir", "cut"]
    proc = subprocess.Popen([sys.executable, "-m", "talkgen", *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chunks = tmp_path / "cut" / "chunks"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(chunks.glob("*.mp4.json"))) < 3 and proc.poll() is None:
        time.sleep(0.02)
    ranks = dict((rank, pid) for pid, rank in _workers(proc.pid))
    assert 1 in ranks, "rank 1 should be running"
    done_before = len(list(chunks.glob("*.mp4.json")))
    os.kill(ranks[1], signal.SIGKILL)
    t = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - t < 30  # well inside the collective timeout and the launcher's grace period
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "rank 1 was killed (SIGKILL) while rendering chunk" in " ".join(err.split())
    assert not _workers(proc.pid), "no rank may outlive the job"
    assert not (tmp_path / "cut.mp4").exists()
    kept = len(list(chunks.glob("*.mp4.json")))
    assert kept >= done_before
    proc = talkgen(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "cut.report.json").read_text())
    render = next(s for s in report["stages"] if s["name"] == "render")
    assert render["detail"]["reused_chunks"] == kept
    # Resumed with the continuity state from the last kept chunk: the same frames as the uninterrupted job.
    assert video_fixtures.frame_hashes(tmp_path / "cut.mp4") == video_fixtures.frame_hashes(whole / "whole.mp4")


def test_a_rank_that_raises_is_named_with_its_chunk_and_error(tmp_path, monkeypatch):
    """The worker's own error report, read back by the launcher into one line."""
    from talkgen.chunks import Chunk, Plan
    from talkgen.ranks import worker
    from talkgen.ranks.launch import describe_failure

    (tmp_path / "ranks").mkdir()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(sys, "argv", ["worker", str(tmp_path)])
    with pytest.raises(SystemExit):
        worker.main()  # no request.json: it fails before any collective
    plan = Plan(25, 16000, 2560, 4, 8.0, [Chunk(0, 0, 4)])
    failures = {0: -signal.SIGTERM, 1: 1}  # exit codes: rank 0 stopped by the launcher, rank 1 failed
    line = describe_failure(failures, tmp_path, plan, "key")
    assert line.startswith("rank 1 failed in chunk 0: FileNotFoundError:")
    assert "\n" not in line and "run again to resume" in line


@pytest.mark.slow
def test_nproc_must_suit_the_back_end(tmp_path):
    (tmp_path / "s.txt").write_text("Hello.")
    proc = talkgen(["render", "s.txt", "--say", "-o", "o.mp4", "render.engine=tp-test", "render.nproc=3"], tmp_path)
    assert proc.returncode == 2 and "render.nproc must divide 64" in proc.stderr
    proc = talkgen(["render", "s.txt", "--say", "-o", "o.mp4", "render.nproc=2"], tmp_path)
    assert proc.returncode == 2 and "render.engine=puppet runs as 1 process(es): set render.nproc=1" in proc.stderr
