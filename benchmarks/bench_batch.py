"""Benchmark `talkgen batch` against separate renders, on one machine and on a local Ray cluster.

    python benchmarks/bench_batch.py            # everything (about 15 minutes on 2 cores)
    python benchmarks/bench_batch.py --quick    # skip the 50-job memory run

Targets (issue 14), 12 short questions in reply mode with the default (cpu) recipe:
one warm worker <= 0.4x the time of 12 separate `talkgen render` runs; each worker loads
each model once; a finished batch re-runs in < 3 s; the same batch on a local Ray cluster
<= 1.15x the local run; a worker's peak RSS after 50 jobs within 10% of its peak after 5.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import print_table  # noqa: E402

QUESTIONS = [
    "What is a comet?", "Why is the sky blue?", "How do bees make honey?", "What is a black hole?",
    "Why do cats purr?", "How does a rainbow form?", "What is gravity?", "Why is the sea salty?",
    "How do plants eat?", "What makes thunder?", "Why do leaves fall?", "What is the moon made of?",
]


FAILED: list[str] = []


CPU: dict[str, float] = {}  # each command's CPU seconds (user + system, with its workers and encoders)


def talkgen(*args: str, cwd: Path) -> float:
    """Wall time of one talkgen command. A job that fails (talkgen check refuses the puppet's
    lip sync on some answers) still did all its work: it is counted and reported, not hidden."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "talkgen", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[args[0]] = CPU.get(args[0], 0.0) + (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        FAILED.append(f"{' '.join(args[:2])}: exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1][:160]}")
    return time.perf_counter() - t


def questions(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"q{i:02d}.txt").write_text(QUESTIONS[i % len(QUESTIONS)] + (f" Question {i}." if i >= len(QUESTIONS) else "") + "\n")
    return folder


def report(out: Path) -> dict:
    return json.loads((out / "batch.report.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the 50-job memory run")
    args = ap.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        qs = questions(d / "q", 12)
        # A warm-up render, so the LLM's one-time GGUF conversion is in neither figure.
        talkgen("render", str(qs / "q00.txt"), "-o", str(d / "warm.mp4"), "-q", cwd=d)

        (d / "sep").mkdir()
        CPU.clear()
        separate = sum(talkgen("render", str(q), "-o", str(d / "sep" / f"{q.stem}.mp4"), "-q", cwd=d)
                       for q in sorted(qs.iterdir()))
        rows.append(("12 separate talkgen render", f"{separate:.1f} s", f"{len(FAILED)} exited non-zero", ""))
        local = talkgen("batch", str(qs), "-o", str(d / "local"), "-q", cwd=d)
        rep = report(d / "local")
        failed = [j["name"] for j in rep["jobs"] if j["status"] != "done"]
        ratio = local / separate
        rows.append(("batch, one warm worker", f"{local:.1f} s", f"{ratio:.2f}x the separate renders; {len(failed)} failed",
                     "<= 0.4x"))
        # The floor no schedule on this machine can beat: the batch's CPU seconds over its cores.
        cores = os.cpu_count() or 1
        rows.append(("CPU seconds per job (user + system)", "", f"separate {CPU['render'] / 12:.1f}, batch {CPU['batch'] / 12:.1f}; "
                     f"the batch's CPU over {cores} cores is {CPU['batch'] / cores / separate:.2f}x the separate renders' wall", ""))
        loads = rep["workers"][0]["loads"]
        rows.append(("models loaded by the worker", "", ", ".join(f"{k} {v}x" for k, v in loads.items()),
                     "each once"))
        video_s = sum(j["video_s"] for j in rep["jobs"])
        rows.append(("throughput", "", f"{video_s / local:.2f} video s per wall s ({video_s:.0f} s of video)", ""))
        again = talkgen("batch", str(qs), "-o", str(d / "local"), "-q", cwd=d)
        rerun = report(d / "local")
        ran = [j["name"] for j in rerun["jobs"] if not j["skipped"]]  # failed jobs are tried again
        rows.append(("finished batch re-run", f"{again:.2f} s", f"{12 - len(ran)} skipped, {len(ran)} tried again", "< 3 s"))

        # Loopback only, as in tests/test_batch_ray.py (Ray reads this when it is imported).
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        from ray.cluster_utils import Cluster

        loop = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **loop})
        try:
            cluster.add_node(num_cpus=1, **loop)
            cluster.wait_for_nodes()
            on_ray = talkgen("batch", str(qs), "-o", str(d / "ray"), "--ray", cluster.address, "-q", cwd=d)
        finally:
            cluster.shutdown()
        rows.append(("the same batch on a local Ray cluster", f"{on_ray:.1f} s", f"{on_ray / local:.2f}x the local run",
                     "<= 1.15x"))
        ray_loads = report(d / "ray")["workers"][0]["loads"]
        rows.append(("models loaded by the Ray worker", "", ", ".join(f"{k} {v}x" for k, v in ray_loads.items()), "each once"))

        if not args.quick:
            # A leak test holds the work constant: the first 5 questions, then the same 5 again
            # nine times (each job its own, rendered from scratch). With new questions the peak
            # would also rise with the longest answer so far, which is not memory kept.
            many = d / "many"
            many.mkdir()
            for i in range(50):
                (many / f"m{i:02d}.txt").write_text(QUESTIONS[i % 5] + "\n")
            talkgen("batch", str(many), "-o", str(d / "many-out"), "-q", cwd=d)
            jobs = report(d / "many-out")["jobs"]
            at5, at50 = jobs[4]["peak_rss_mb"], jobs[49]["peak_rss_mb"]
            rows.append(("worker peak RSS after 5 / 50 jobs (5 questions, repeated)", "",
                         f"{at5:.0f} / {at50:.0f} MiB ({at50 / at5 - 1:+.1%})", "within 10%"))
    print_table("talkgen batch", rows)
    for line in FAILED:
        print(f"non-zero exit: {line}")
    busy = os.getloadavg()
    print(f"load average at the end: {busy[0]:.2f} {busy[1]:.2f} {busy[2]:.2f}")


if __name__ == "__main__":
    main()
