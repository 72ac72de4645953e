"""Benchmark the environment boundary: the render stage with the avatar ranks in talkgen's own
Python and under a second environment (render.python), and print a table.

    python benchmarks/bench_rank_python.py [--repeats 3]

Issue 12 asks: tp-test on 2 ranks, a 2-minute script, the render stage under a second
environment at most 1.05x the same render in talkgen's own. The second environment is the
tests' one (torch 2.13.0 CPU, numpy<2, transformers 4.51.3), built on first use. Runs
alternate between the two, so a machine that slows down mid-run touches both alike; the
table gives each run's render stage and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from bench_ranks import render  # noqa: E402
from bench_render import script_of  # noqa: E402
from table import print_table  # noqa: E402

import envs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    far = envs.far_python()
    times: dict[str, list[float]] = {"own": [], "far": []}
    outside: dict[str, list[float]] = {"own": [], "far": []}  # the render stage less the back end's own compute
    details: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        script = script_of(120, d / "s.txt")
        for _ in range(args.repeats):
            for name, extra in (("own", []), ("far", [f"render.python={far}"])):
                _, rep = render(d, script, "render.nproc=2", "render.size=256", "--from", "render", *extra)
                stage = next(s for s in rep["stages"] if s["name"] == "render")
                times[name].append(stage["wall_s"])
                outside[name].append(stage["wall_s"] - stage["detail"]["backend_compute_s"])
                details[name] = {**stage["detail"], "video_s": rep["video_s"]}
    rows = []
    for name, label in (("own", "talkgen's own Python"), ("far", "second environment")):
        det = details[name]
        rows.append((f"render stage, 2 ranks, {det['video_s']:.0f} s video, {label}", f"{statistics.median(times[name]):.2f} s",
                     f"runs {', '.join(f'{t:.2f}' for t in times[name])} s; torch {det['torch']}; start-up {det['startup_s']:.2f} s; "
                     f"back end {det['backend_compute_s']:.2f} s", ""))
    ratio = statistics.median(times["far"]) / statistics.median(times["own"])
    rows.append(("second environment / own (medians)", f"{ratio:.3f}x", "", "<= 1.05x"))
    # The boundary's own cost, apart from how fast each torch runs the back end: start-up, the
    # broadcasts, x264 waits, teardown.
    for name, label in (("own", "talkgen's own Python"), ("far", "second environment")):
        rows.append((f"render stage less back-end compute, {label}", f"{statistics.median(outside[name]):.2f} s",
                     f"runs {', '.join(f'{t:.2f}' for t in outside[name])} s", ""))
    print_table("talkgen render.python benchmark", rows)


if __name__ == "__main__":
    main()
