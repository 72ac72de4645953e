"""Benchmark `talkgen chat` on this machine, warm, through a real pseudo-terminal.

    python benchmarks/bench_chat.py              # default recipe: 512x512, replies of up to 60 words
    python benchmarks/bench_chat.py --turns 5
    python benchmarks/bench_chat.py --turns 30  # a long session: does memory grow turn by turn?

Targets (issue 6), with the models loaded (a first turn warms up and is not counted):
typed question to the first reply token < 2 s; typed question to the turn's clip being
ready <= the clip's duration + 2 s. Each question is typed once the last clip is ready.
Timings come from the terminal (when the text appears), not from talkgen's own log.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import print_table  # noqa: E402

QUESTIONS = [
    "What is your favourite season, and why?",
    "How do bees make honey?",
    "Can you suggest a good name for a small black cat?",
    "What should I cook for dinner tonight?",
    "Why is the sky blue?",
    "Tell me something interesting about the moon.",
]
CLIP = r"clip (\d+) ready: \S+ \(([\d.]+) s, rendered in ([\d.]+) s\)"


def rss_mib(pid: int) -> float:
    """Resident memory of the chat process (ffmpeg children come and go, and are not counted)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def turn(child: pexpect.spawn, question: str) -> dict:
    child.sendline(question)
    t = time.monotonic()
    child.expect(r"avatar> (\x1b\[0m)?")
    child.expect(r"[A-Za-z0-9]")
    first = time.monotonic() - t
    child.expect(CLIP)
    ready = time.monotonic() - t
    return {"first_s": first, "ready_s": ready, "clip_s": float(child.match.group(2)), "render_s": float(child.match.group(3)),
            "rss_mib": rss_mib(child.pid)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=4)
    args = ap.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        session = Path(d) / "chat"
        t = time.monotonic()
        # The user's own LLM cache: warm means the GGUF was converted by an earlier run.
        child = pexpect.spawn(sys.executable, ["-m", "talkgen", "chat", "--session-dir", str(session)],
                              env=dict(os.environ), encoding="utf-8", timeout=300, dimensions=(50, 250))
        child.expect_exact("you> ")
        start_s = time.monotonic() - t
        warm = turn(child, "Hello! Who are you?")  # warm-up: the first clip also waits for the voice and the face to load
        turns = [turn(child, QUESTIONS[i % len(QUESTIONS)]) for i in range(args.turns)]
        child.sendline("/quit")
        child.expect(pexpect.EOF)
        events = [json.loads(line) for line in (session / "events.jsonl").read_text().splitlines()]
        replies = [e for e in events if e["event"] == "reply"][1:]
    rows.append(("start: prompt shown (models loading)", f"{start_s:.1f} s", "imports + LLM load; voice and face load behind it", ""))
    firsts = [x["first_s"] for x in turns]
    rows.append((f"question -> first reply token ({len(turns)} turns)", f"{statistics.median(firsts):.2f} s median",
                 f"max {max(firsts):.2f} s", "< 2 s"))
    for i, x in enumerate(turns, 1):
        slack = x["ready_s"] - x["clip_s"]
        rows.append((f"turn {i}: question -> clip ready", f"{x['ready_s']:.1f} s",
                     f"{x['clip_s']:.1f} s clip (render {x['render_s']:.1f} s); {slack:+.1f} s vs clip length", "<= clip + 2 s"))
    rss = [x["rss_mib"] for x in turns]
    rows.append(("memory (RSS of the chat process)", f"{warm['rss_mib']:.0f} MiB after warm-up",
                 f"{rss[0]:.0f} MiB after turn 1, {rss[-1]:.0f} MiB after turn {len(rss)}, peak {max(rss):.0f} MiB", ""))
    if len(rss) >= 4:
        half = len(rss) // 2
        growth = (rss[-1] - rss[half - 1]) / (len(rss) - half)
        rows.append((f"memory growth per turn, turns {half}-{len(rss)}", f"{growth:+.1f} MiB", "", ""))
    tokens = sum(r["tokens"] for r in replies)
    seconds = sum(r["seconds"] for r in replies)
    rows.append(("reply generation during the chat", f"{tokens} tokens", f"{tokens / seconds:.1f} tokens/s", ""))
    print_table("talkgen chat benchmark", rows)


if __name__ == "__main__":
    main()
