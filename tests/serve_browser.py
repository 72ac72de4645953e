"""A real `talkgen serve` on 127.0.0.1 and a real headless Chromium on its page.

For tests/test_serve_page.py and benchmarks/bench_serve_page.py. The browser is the system's
Chromium (Debian's `chromium` package, installed by install.sh), driven by Playwright;
Playwright's own browser download is never used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# What works as root in a container with no display and no outside network. Playwright adds
# --headless and a new, empty --user-data-dir of its own.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Recorded in the page from its start, by performance.now(), for each turn (by its place in
# the conversation): when Enter asked, each length the reply text had as it streamed in, when
# the avatar's video began playing that turn, and whether that was the live stream (hls.js
# plays from a Media Source blob: URL) rather than the finished MP4.
MARKS_SCRIPT = """
window.__marks = { asked: [], firstText: [], lengths: [], playing: [], live: [] };
document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && e.target.name === "question" && e.target.value.trim())
    window.__marks.asked.push(performance.now());
}, true);
document.addEventListener("playing", () => {
  const turns = [...document.querySelectorAll("#turns > li")];
  const i = turns.findIndex((li) => li.classList.contains("playing"));
  if (i >= 0 && window.__marks.playing[i] === undefined) {
    window.__marks.playing[i] = performance.now();
    window.__marks.live[i] = document.querySelector("video").src.startsWith("blob:");
  }
}, true);
new MutationObserver(() => {
  document.querySelectorAll("#turns > li .reply").forEach((reply, i) => {
    const n = reply.textContent.length;
    if (!n) return;
    const seen = (window.__marks.lengths[i] ||= []);
    if (seen[seen.length - 1] !== n) seen.push(n);
    if (window.__marks.firstText[i] === undefined) window.__marks.firstText[i] = performance.now();
  });
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def children_of(pid: int) -> list[int]:
    """The processes `pid` started, from any of its threads (a server's workers are started by its dispatcher's)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 10, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as res:
            return res.status, json.load(res)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


@contextmanager
def serve(out: Path, *args: str, token: str | None = None, ready_s: float = 300) -> Iterator[str]:
    """`talkgen serve` on a free port of 127.0.0.1 with its jobs under `out`; yields its URL once
    /v1/health answers 200 (asked with `token`, if the server has one). Stopped at the end, also
    on failure; its log is out/serve.log."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(out / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "talkgen", "serve", "--port", str(port), "--out", str(out / "jobs"), *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + ready_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"talkgen serve exited with {proc.returncode}: {(out / 'serve.log').read_text()[-2000:]}")
                try:
                    if get_json(url + "v1/health", timeout=2, token=token)[0] == 200:
                        break
                except (OSError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"talkgen serve not healthy after {ready_s:.0f} s: {(out / 'serve.log').read_text()[-2000:]}")
                time.sleep(0.5)
            yield url
        finally:
            stop(proc)


def stop(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it has not gone in grace_s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextmanager
def chromium(fake_microphone: Path | None = None):
    """A headless Chromium (Playwright's Browser). With fake_microphone, getUserMedia is granted
    without asking and hears that WAV once, then silence."""
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_FLAGS)
    if fake_microphone is not None:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={fake_microphone}%noloop"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, timeout_s: float = 60):
    """A new page (its own context: its own sessionStorage) on the serve page, marks recorded,
    once the page says it is ready."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(timeout_s * 1000)
    page = context.new_page()
    page.add_init_script(MARKS_SCRIPT)
    page.goto(url)
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Ready')")
    return page


def ask(page, text: str) -> int:
    """Types a question and presses Enter; returns its turn's index."""
    n = page.locator("#turns > li").count()
    box = page.locator("textarea[name=question]")
    box.fill(text)
    box.press("Enter")
    page.locator("#turns > li").nth(n).wait_for()
    return n


def wait_playing(page, turn: int, timeout_s: float = 120, advance_s: float = 0.5) -> None:
    """Waits until the video shows `turn` and its currentTime has advanced by advance_s."""
    page.wait_for_function(f"document.querySelectorAll('#turns > li')[{turn}]?.classList.contains('playing')", timeout=timeout_s * 1000)
    start = page.evaluate("document.querySelector('video').currentTime")
    # A short answer can play to its end before `start` is read (a loaded machine polls slowly): an
    # ended video whose clock got past advance_s has played too.
    page.wait_for_function(f"(v => v.currentTime > {start + advance_s} || (v.ended && v.currentTime > {advance_s}))"
                           "(document.querySelector('video'))", timeout=timeout_s * 1000)


def wait_done(page, turn: int, timeout_s: float = 300) -> str:
    """Waits until the turn's job has finished (done, failed or cancelled); returns that status."""
    li = page.locator("#turns > li").nth(turn)
    page.wait_for_function(
        "li => ['done', 'failed', 'cancelled'].includes(li.dataset.status)", arg=li.element_handle(), timeout=timeout_s * 1000
    )
    return li.get_attribute("data-status")


def marks(page) -> dict:
    return page.evaluate("window.__marks")
