"""Benchmark the `talkgen serve` page in a real headless Chromium, warm, default recipe.

    python benchmarks/bench_serve_page.py                 # 10 questions, then 4 sessions x 3 questions
    python benchmarks/bench_serve_page.py --questions 5 --sessions 4 --rounds 2

Targets (issue 25): typed question -> the avatar's video playing in the browser <= 2 s (median
of 10), first reply text <= 1 s; 4 browser sessions at once each get every answer, none failed.
Times are taken in the page (performance.now()): from the Enter key to the first reply text
on screen, and to the video's `playing` event for that turn. A first question warms up and is
not counted. Each question is asked with the avatar idle (the page plays answers in the order
asked, so a question asked while it talks waits for the answer before it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from bench_chat import QUESTIONS  # noqa: E402  (the terminal chat benchmark's questions)
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402
from serve_browser import ask, chromium, marks, open_page, serve, wait_done  # noqa: E402
from table import print_table  # noqa: E402


def latencies(page, turn: int) -> tuple[float | None, float | None]:
    """(Enter -> first reply text, Enter -> video playing) for a turn, in seconds; None if never."""
    m = marks(page)
    asked = m["asked"][turn]
    text = m["firstText"][turn] if turn < len(m["firstText"]) else None
    playing = m["playing"][turn] if turn < len(m["playing"]) else None
    return (None if text is None else (text - asked) / 1000, None if playing is None else (playing - asked) / 1000)


def wait_played(page, turn: int, timeout_s: float = 60) -> None:
    """Until the video began playing the turn (with no live stream, that is after it is done)."""
    try:
        page.wait_for_function(f"window.__marks.playing[{turn}] !== undefined", timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        pass  # counted as not played


def one_by_one(page, n: int) -> list[tuple[float | None, float | None]]:
    out = []
    for i in range(n):
        page.locator("video").evaluate("v => v.pause()")
        turn = ask(page, QUESTIONS[i % len(QUESTIONS)])
        wait_done(page, turn)
        wait_played(page, turn)
        out.append(latencies(page, turn))
    return out


def at_once(browser, url: str, sessions: int, rounds: int) -> list[tuple[str, str, str, str]]:
    """`sessions` pages (each its own browser context) ask a question each at the same moment,
    `rounds` times, each round once all answers of the last are done."""
    pages = [open_page(browser, url) for _ in range(sessions)]
    t = time.monotonic()
    statuses, text_s, play_s = [], [], []
    for r in range(rounds):
        for k, p in enumerate(pages):
            p.locator("video").evaluate("v => v.pause()")
            ask(p, QUESTIONS[(r * sessions + k) % len(QUESTIONS)])
        for p in pages:
            statuses.append(wait_done(p, r, timeout_s=600))
            wait_played(p, r)
            a, b = latencies(p, r)
            text_s.append(a)
            play_s.append(b)
    wall = time.monotonic() - t
    n = sessions * rounds
    answered = sum(s == "done" for s in statuses)
    played = sum(v is not None for v in play_s)
    return [
        (f"{sessions} sessions at once x {rounds} questions", f"{wall:.1f} s",
         f"{answered} of {n} answered, {played} of {n} played, {n - answered} failed", "every answer, none failed"),
        ("  question -> first reply text, under that load", *summary(text_s), ""),
        ("  question -> video playing, under that load", *summary(play_s), ""),
    ]


def summary(values: list[float | None]) -> tuple[str, str]:
    got = [v for v in values if v is not None]
    if not got:
        return "never", f"0 of {len(values)}"
    return f"{statistics.median(got):.2f} s median", f"min {min(got):.2f}, max {max(got):.2f} s ({len(got)} of {len(values)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=10)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="questions each session asks in the concurrent part (0: none)")
    args = ap.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as d, chromium() as browser:
        t = time.monotonic()
        with serve(Path(d)) as url:
            rows.append(("server start to healthy (models loaded)", f"{time.monotonic() - t:.1f} s", "", ""))
            page = open_page(browser, url)
            one_by_one(page, 1)  # warm-up
            timed = one_by_one(page, args.questions)
            text_s, play_s = zip(*timed)
            live = sum(bool(x) for x in marks(page)["live"][1:])
            rows.append((f"question -> first reply text ({args.questions}, one at a time)", *summary(list(text_s)), "<= 1 s"))
            time_s, result = summary(list(play_s))
            rows.append((f"question -> video playing ({args.questions}, one at a time)", time_s,
                         f"{result}; {live} from the live stream, the rest from the finished MP4", "<= 2 s"))
            page.context.close()

            if args.rounds:
                rows += at_once(browser, url, args.sessions, args.rounds)
    print_table("talkgen serve page benchmark (headless chromium)", rows)


if __name__ == "__main__":
    main()
