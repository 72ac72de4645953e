"""Benchmark `talkgen serve` over its API, warm, as a client sees it.

    python benchmarks/bench_serve.py                  # default recipe: 10 typed questions, one at a time
    python benchmarks/bench_serve.py --questions 50   # memory: the server's and the worker's RSS after 5 and after 50
    python benchmarks/bench_serve.py --clients 4      # 4 clients asking at once

Targets (issue 25), with the models loaded: typed question -> first reply text <= 1 s (median
of 10); the server's RSS after 50 questions within 10% of its RSS after 5; 4 clients at once
each get every answer. The page's own figure (question -> video playing in the browser) is the
page's benchmark; this one gives the server's part of it: the first chunk listed, and the video
ready. Each question is asked once the last one is done (--clients: each client in turn).
Times are taken when the client receives the event, through SSE.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_chat import QUESTIONS, rss_mib  # noqa: E402
from table import print_table  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serve_browser import children_of  # noqa: E402


def ask(client: httpx.Client, question: str, overrides: dict, session: str | None) -> dict:
    """One question: when its first text, first chunk and done events came, from the POST."""
    t = time.monotonic()
    r = client.post("/v1/jobs", json={"script": question, "overrides": overrides, **({"session": session} if session else {})})
    r.raise_for_status()
    job = r.json()
    seen: dict[str, float] = {}
    with client.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=600) as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                seen.setdefault(event, time.monotonic() - t)
            elif line.startswith("data: ") and event in ("done", "failed", "cancelled"):
                data = json.loads(line[6:])
                break
    if event != "done":
        raise RuntimeError(f"job {job['id']} {event}: {data}")
    client.get(f"/v1/jobs/{job['id']}/video.mp4").raise_for_status()
    return {"session": job["session"], "text_s": seen.get("text"), "chunk_s": seen.get("chunk"), "done_s": seen["done"],
            "video_s": data["job"]["video_s"], "render_s": data["job"]["render_s"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=10)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--words", type=int, default=None, help="llm.max_reply_words for each question (default: the recipe's, 60)")
    ap.add_argument("--recipe", default="cpu")
    args = ap.parse_args()
    overrides = {"llm.max_reply_words": args.words} if args.words else {}
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        t = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "talkgen", "serve", "--port", "0", "--out", f"{d}/out", "--recipe", args.recipe,
                                 "--max-queued", "100"], stderr=subprocess.PIPE, text=True)
        url = None
        for line in proc.stderr:
            m = re.search(r"http://127\.0\.0\.1:\d+", line)
            if m:
                url = m.group(0)
                break
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        try:
            with httpx.Client(base_url=url, timeout=60) as c:
                while c.get("/v1/health").status_code != 200:
                    if proc.poll() is not None:
                        raise RuntimeError("the server stopped")
                    time.sleep(0.2)
                ready_s = time.monotonic() - t
                worker = max(children_of(proc.pid), key=rss_mib)  # the warm worker, beside multiprocessing's resource tracker
                rows.append(("start: /v1/health ok (warm-up job)", f"{ready_s:.1f} s", "imports, model loads and one short reply rendered", ""))
                ask(c, "Hello! Who are you?", overrides, None)  # warm: the first question's caches
                results, rss = [], {}
                lock = threading.Lock()
                sessions: dict[int, str | None] = {}

                def client_loop(n: int) -> None:
                    with httpx.Client(base_url=url, timeout=60) as own:
                        for i in range(n, args.questions, args.clients):
                            got = ask(own, QUESTIONS[i % len(QUESTIONS)], overrides, sessions.get(n))
                            sessions[n] = got["session"]
                            with lock:
                                results.append(got)
                                if len(results) in (5, args.questions):
                                    rss[len(results)] = (rss_mib(proc.pid), rss_mib(worker))

                threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(args.clients)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
        finally:
            proc.terminate()
            proc.wait(60)
    n = len(results)
    if n != args.questions:
        raise SystemExit(f"only {n} of {args.questions} questions were answered")
    for key, what, target in (("text_s", "first reply text", "<= 1 s"), ("chunk_s", "first chunk listed", ""),
                              ("done_s", "video ready (done)", "")):
        values = [r[key] for r in results if r[key] is not None]
        rows.append((f"question -> {what} ({n} questions, {args.clients} client(s))", f"{statistics.median(values):.2f} s median",
                     f"min {min(values):.2f} s, max {max(values):.2f} s", target))
    rows.append(("videos", f"{statistics.median(r['video_s'] for r in results):.1f} s median",
                 f"rendered in {statistics.median(r['render_s'] for r in results):.1f} s median (the worker's time on the job)", ""))
    for k, (server, work) in sorted(rss.items()):
        rows.append((f"RSS after {k} questions", f"server {server:.0f} MiB", f"worker {work:.0f} MiB", ""))
    if 5 in rss and n in rss and n > 5:
        rows.append((f"server RSS, {n} vs 5 questions", f"{100 * (rss[n][0] / rss[5][0] - 1):+.1f}%",
                     f"worker {100 * (rss[n][1] / rss[5][1] - 1):+.1f}%", "within 10%"))
    print_table("talkgen serve benchmark", rows)


if __name__ == "__main__":
    main()
