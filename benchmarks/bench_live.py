"""Benchmark the live path: how soon the first chunk of a video can be watched.

    python benchmarks/bench_live.py               # everything (about 5 minutes on 2 cores, quiet)
    python benchmarks/bench_live.py --skip-chat   # render only

Targets (issue 24), warm (each command run once before it is timed):
- `render examples/script.txt --say --live`: the first segment listed <= 3.0 s after launch and
  <= 25% of the whole render; the whole render <= 1.05 x the same render without --live.
- `render examples/question.wav --live`: the first segment listed <= 8 s after launch.
- `talkgen chat`, warm: a typed question to its first segment <= 1.5 s.

Each render runs `--rounds` times (3) with and without --live, alternating; the table gives
medians. Times are taken from outside, as a player sees them: from the launch of the process (or the
question typed) to the moment the playlist first lists a segment. The render's own report
gives the same figure from its start (first_chunk_s), without the interpreter's start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def listed(playlist: Path) -> int:
    try:
        return len(re.findall(r"^\S+\.ts$", playlist.read_text(), re.M))
    except OSError:
        return 0


def live_render(args: list[str], out: Path) -> tuple[float | None, float, dict]:
    """(seconds from launch to the first segment listed, the whole render's seconds, its report)."""
    playlist = out.with_suffix(".m3u8")
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "talkgen", "render", *args, "-o", str(out), "-q", "--live"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while proc.poll() is None:
        if first is None and listed(playlist):
            first = time.perf_counter() - t
        time.sleep(0.005)
    wall = time.perf_counter() - t
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"render failed: {err}")
    return first, wall, json.loads(out.with_name(out.stem + ".report.json").read_text())


def plain_render(args: list[str], out: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "talkgen", "render", *args, "-o", str(out), "-q"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def renders(d: Path, name: str, args: list[str], rows: list, first_target: str, ratio: bool, rounds: int) -> None:
    # Warm-up: the page cache, the LLM's one-time conversion. Each timed run gets a fresh job. The
    # runs with and without --live alternate, so that a machine whose speed drifts (this shared
    # one does, by 20% within minutes) weighs on both alike; medians of `rounds`.
    file = name.split()[0].replace(".", "-")
    plain_render(args, d / f"{file}-warm.mp4")
    plain, lives = [], []
    for i in range(rounds):
        plain.append(plain_render(args, d / f"{file}-plain{i}.mp4"))
        lives.append(live_render(args, d / f"{file}-live{i}.mp4"))
    med = statistics.median
    first = med([f for f, _, _ in lives if f is not None])
    wall, plain_s = med([w for _, w, _ in lives]), med(plain)
    shares = sorted(f / w for f, w, _ in lives if f is not None)
    rows.append((f"{name}: first segment listed", f"{first:.2f} s",
                 f"{first / wall:.0%} of the whole render (runs: {', '.join(f'{x:.0%}' for x in shares)})", first_target))
    rows.append((f"{name}: the render's own first_chunk_s", f"{med([r['first_chunk_s'] for _, _, r in lives]):.2f} s",
                 f"{lives[0][2]['video_s']:.1f} s of video", ""))
    rows.append((f"{name}: whole render, --live", f"{wall:.2f} s", f"{wall / plain_s:.3f} x without --live ({plain_s:.2f} s)",
                 "<= 1.05" if ratio else ""))


def chat(rows: list, turns: int) -> None:
    """Each question typed once the last clip is ready; the time until the turn's playlist lists a
    segment, watched from outside, and until the chat shows the playlist's path (at the reply's next word)."""
    import pexpect

    questions = ["What is your favourite season?", "How do bees make honey?", "Why is the sky blue?",
                 "What should I cook tonight?", "Tell me about the moon.", "Name a small black cat."]
    with tempfile.TemporaryDirectory() as d:
        child = pexpect.spawn(sys.executable, ["-m", "talkgen", "chat", "--session-dir", "s"], cwd=d, env=dict(os.environ),
                              encoding="utf-8", timeout=300, dimensions=(50, 250))
        child.expect_exact("you> ")
        times, shown = [], []
        for i in range(turns + 1):
            playlist = Path(d) / "s" / "turns" / f"{i + 1:04d}" / "clip.m3u8"
            child.sendline(questions[i % len(questions)])
            t = time.monotonic()
            while not listed(playlist):
                time.sleep(0.005)
            first = time.monotonic() - t
            child.expect(r"clip (\d+) live: ")
            seen = time.monotonic() - t
            child.expect(r"clip (\d+) ready: ")
            if i:  # the first turn warms up
                times.append(first)
                shown.append(seen)
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    rows.append(("chat, warm: question to its first segment", f"{statistics.median(times):.2f} s",
                 f"median of {len(times)}; best {min(times):.2f} s", "<= 1.5 s"))
    rows.append(("chat, warm: question to the playlist's path shown", f"{statistics.median(shown):.2f} s",
                 f"median of {len(shown)}; at the reply's next word", ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-chat", action="store_true")
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each render, with and without --live, alternating")
    args = ap.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    start_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        renders(d, "script.txt --say", [str(ROOT / "examples" / "script.txt"), "--say"], rows, "<= 3.0 s, <= 25%", True, args.rounds)
        renders(d, "question.wav", [str(ROOT / "examples" / "question.wav")], rows, "<= 8 s", False, args.rounds)
    if not args.skip_chat:
        chat(rows, args.turns)
    print_table("talkgen live", rows)
    print(f"load average (1 min) at the start: {start_load:.2f}, before the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
