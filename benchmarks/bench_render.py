"""Benchmark `talkgen render --say` on this machine and print a table of times and ratios.

    python benchmarks/bench_render.py            # everything (about 3 minutes on 2 cores)
    python benchmarks/bench_render.py --quick    # skip the 10-minute memory run

Targets: whole render warm <= 0.3x the video's duration and render stage >= 200 frames/s
at 512x512 with the puppet's face rig (issue 16; issue 2 asked 0.5x and 100 frames/s); a
finished job re-run < 2 s with no model loaded; peak RSS for a 10-minute script < 1.5 GB
and within 10% of a 1-minute script's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PARAGRAPH = (
    "Paragraph {n}. Every stage of a talkgen job is saved to disk as it finishes, so a render that stops "
    "halfway picks up where it left off. The voice is Piper, the face is a puppet, and ffmpeg joins the "
    "chunks. This paragraph is number {n}, and it costs nothing but electricity."
)


def script_of(seconds: float, path: Path) -> Path:
    # One paragraph is about 18 s of speech.
    n = max(1, round(seconds / 18))
    path.write_text("\n\n".join(PARAGRAPH.format(n=i + 1) for i in range(n)), encoding="utf-8")
    return path


def render(script: Path, out: Path, job: Path, *extra: str) -> tuple[float, dict]:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "talkgen", "render", str(script), "--say", "-o", str(out), "--job-dir", str(job), "-q", *extra],
        check=True, stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t
    return wall, json.loads(out.with_name(out.stem + ".report.json").read_text())


def stage(report: dict, name: str) -> dict:
    return next(s for s in report["stages"] if s["name"] == name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the 10-minute memory run")
    args = ap.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        script = script_of(30, d / "s30.txt")  # about 30 s of speech
        # Cold once (page cache, first Python imports), then warm on a fresh job.
        render(script, d / "cold.mp4", d / "cold")
        wall, rep = render(script, d / "warm.mp4", d / "warm")
        video = rep["video_s"]
        rows.append(("render --say, warm, 512x512", f"{wall:.1f} s", f"{wall / video:.3f} x video", "<= 0.3"))
        r = stage(rep, "render")
        frames = rep["output"]["frames"]
        rows.append(("render stage alone", f"{r['wall_s']:.1f} s", f"{frames / r['wall_s']:.0f} frames/s", ">= 200"))
        sp = stage(rep, "speak")
        rows.append(("speak stage (Piper, incl. load)", f"{sp['wall_s']:.1f} s", f"{sp['rtf']:.3f} x speech", ""))
        wall, rep2 = render(script, d / "warm.mp4", d / "warm")
        hits = all(s["cache"] == "hit" for s in rep2["stages"])
        rows.append(("finished job re-run", f"{wall:.2f} s", "all cached" if hits else "REDID WORK", "< 2 s"))
        if not args.quick:
            rss = {}
            for minutes in (1, 10):
                s = script_of(minutes * 60, d / f"m{minutes}.txt")
                wall, rep = render(s, d / f"m{minutes}.mp4", d / f"m{minutes}")
                rss[minutes] = rep["peak_rss"]
                rows.append((
                    f"{minutes}-minute script ({rep['video_s']:.0f} s video)", f"{wall:.1f} s",
                    f"peak RSS {rss[minutes]['talkgen_mb']:.0f} MiB",
                    "< 1.5 GB" if minutes == 10 else "",
                ))
            ratio = rss[10]["talkgen_mb"] / rss[1]["talkgen_mb"]
            rows.append(("peak RSS, 10 min / 1 min", "", f"{ratio:.3f}", "<= 1.10"))
    print_table("talkgen render benchmark", rows)


if __name__ == "__main__":
    main()
