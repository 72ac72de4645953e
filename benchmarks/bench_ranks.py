"""Benchmark rendering across torchrun ranks with the tp-test back end, and print a table.

    python benchmarks/bench_ranks.py

Issue 4 asks: orchestration overhead (render wall time minus the back end's own compute
time, over the render wall time) at most 2% for a 2-minute script, and a finished job
resumed in under 2 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_render import script_of  # noqa: E402
from table import print_table  # noqa: E402


def render(d: Path, script: Path, *extra: str) -> tuple[float, dict]:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "talkgen", "render", str(script), "--say", "-o", str(d / "t.mp4"), "--job-dir", str(d / "job"),
         "-q", "render.engine=tp-test", *extra],
        check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t, json.loads((d / "t.report.json").read_text())


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        script = script_of(120, d / "s.txt")
        for nproc in (1, 2):
            wall, rep = render(d, script, f"render.nproc={nproc}", "render.size=256", "--from", "render")
            r = next(s for s in rep["stages"] if s["name"] == "render")
            det = r["detail"]
            other = r["wall_s"] - det["backend_compute_s"] - det["startup_s"] - det["encode_wait_s"]
            rows.append((f"render stage, {nproc} rank(s), {rep['video_s']:.0f} s video", f"{r['wall_s']:.1f} s",
                         f"back end {det['backend_compute_s']:.1f} s; start-up {det['startup_s']:.1f} s "
                         f"(load {det['load_s']:.2f} s); x264 waits {det['encode_wait_s']:.1f} s; rest {other:.1f} s; "
                         f"overhead {100 * det['overhead_ratio']:.1f}%", "<= 2%"))
        wall, rep = render(d, script, "render.nproc=2", "render.size=256")
        hits = all(s["cache"] == "hit" for s in rep["stages"])
        rows.append(("finished job, run again", f"{wall:.2f} s", "all cached, no launch" if hits else "REDID WORK", "< 2 s"))
    print_table("talkgen distributed benchmark", rows)


if __name__ == "__main__":
    main()
