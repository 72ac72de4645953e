"""Told to stop: SIGTERM and SIGHUP on a real render and a real chat, and the mechanism itself.

A scheduler stops a job with SIGTERM. talkgen must stop within seconds, say in one line what
it kept and how to resume, exit 128 + the signal, and leave no temporary file and no child.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import incli

from talkgen import stopping

pytestmark = pytest.mark.slow

SCRIPT = " ".join(f"Sentence {i} is spoken here, and then a short pause follows." for i in range(6))
RENDER = ["render", "s.txt", "--say", "-o", "o.mp4", "--size", "128", "--job-dir", "job",
          "render.max_chunk_s=1.0", "render.min_chunk_s=0.5", "-q"]


def talkgen(args, cwd, **kw):
    return subprocess.Popen([sys.executable, "-m", "talkgen", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def children(pid: int) -> list[int]:
    """The processes whose parent is pid (ffmpeg sits in a session of its own, but is still a child)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def alive(pids: list[int]) -> list[int]:
    def running(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    return [p for p in pids if running(p)]


def wait_for(condition, proc, timeout=180):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.02)


def temporaries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".*.tmp-*")]


def sidecars(job: Path) -> int:
    return len(list((job / "chunks").glob("[0-9]*.mp4.json"))) if (job / "chunks").is_dir() else 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_render_told_to_stop_says_what_it_kept_and_resumes(tmp_path, sig):
    (tmp_path / "s.txt").write_text(SCRIPT)
    proc = talkgen(RENDER, tmp_path)
    wait_for(lambda: sidecars(tmp_path / "job") >= 3, proc)
    kids = children(proc.pid)
    assert kids, "the render should be encoding (ffmpeg) when the signal comes"
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 128 + sig, err
    assert took < 5, f"took {took:.1f} s to stop; its stderr ends: {err[-1500:]}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    name = signal.Signals(sig).name
    match = re.fullmatch(rf"stopped by {name}: kept the speech, the plan and (\d+) of (\d+) chunks in job; "
                         r"run the same command again to resume", lines[0])
    assert match, lines[0]
    assert temporaries(tmp_path) == [], "temporary files were left behind"
    assert alive(kids) == [], "a child outlived the render"
    assert not (tmp_path / "o.mp4").exists()
    if sig != signal.SIGTERM:
        return
    kept = int(match.group(1))
    assert kept == sidecars(tmp_path / "job")
    done = incli.talkgen(RENDER, tmp_path)  # the resume: in the test's process, as nothing here is about it
    assert done.returncode == 0, done.stderr
    render = next(s for s in json.loads((tmp_path / "o.report.json").read_text())["stages"] if s["name"] == "render")
    assert render["detail"]["reused_chunks"] == kept  # exactly what the line said was kept


# The mechanism alone, in a process of its own: a write in progress, a child, and a cleanup that hangs.
HANGING = textwrap.dedent("""
    import subprocess, sys, time
    from pathlib import Path
    from talkgen import stopping
    from talkgen.job import atomic_path

    stopping.GRACE_S = float(sys.argv[2])
    with stopping.handling():
        with atomic_path(Path(sys.argv[1]) / "out.txt") as tmp:
            tmp.write_text("half of it")
            child = stopping.track(subprocess.Popen(["sleep", "300"], start_new_session=True))
            try:  # the pid is printed inside the try: the test's SIGTERM may come the moment it is read
                print(child.pid, flush=True)
                time.sleep(300)
            except stopping.Terminated:
                print("stopping", flush=True)
                time.sleep(300)  # a cleanup that never ends
""")


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT, None])
def test_a_second_signal_or_the_grace_period_ends_a_stop_at_once(tmp_path, second):
    proc = subprocess.Popen([sys.executable, "-c", HANGING, str(tmp_path), "1" if second is None else "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    assert list(tmp_path.glob(".out.txt.tmp-*"))
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().strip() == "stopping"
    sent = time.monotonic()
    if second is not None:
        proc.send_signal(second)
    proc.wait(timeout=10)
    took = time.monotonic() - sent
    assert proc.returncode == 128 + (second or signal.SIGTERM)
    assert took < (1 if second is not None else 4), took
    assert alive([child]) == [] and not list(tmp_path.iterdir())
    proc.stdout.close()
    proc.stderr.close()


# The main thread asleep in a system call (as in readline's select() at chat's prompt) while
# another thread runs Python's handler for the signal: the kernel queues a Ctrl-C or SIGTERM for
# the process, and a thread that unblocks signals first (every pthread_create, every subprocess
# start) takes it. Sending it to that thread is the same case, made certain. The other thread
# sends it once the kernel shows the main thread in read(r) (/proc/self/task/TID/syscall: the call's
# number, then its first argument, the fd), not after a fixed sleep: on a loaded machine the main
# thread could still be on its way there, and would take the signal itself, awake.
# ctrl_c(), as chat's: a suite run from a background job starts this Python with SIGINT ignored.
TAKEN_ELSEWHERE = textwrap.dedent("""
    import contextlib, os, signal, sys, threading, time
    from talkgen import stopping

    sig, wakes = int(sys.argv[1]), sys.argv[2] == "wakes"
    r, w = os.pipe()
    main = threading.get_native_id()

    def asleep_in_read():
        fields = open(f"/proc/self/task/{main}/syscall").read().split()
        return fields[0] != "running" and len(fields) > 1 and int(fields[1], 16) == r

    def other():
        deadline = time.monotonic() + 10
        while not asleep_in_read() and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(threading.get_ident(), sig)

    with stopping.handling(), stopping.ctrl_c(), stopping.main_wakes() if wakes else contextlib.nullcontext():
        try:
            threading.Thread(target=other, daemon=True).start()
            os.read(r, 1)
        except (KeyboardInterrupt, stopping.Terminated) as exc:
            print(type(exc).__name__, flush=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_another_thread_took_still_wakes_the_main_thread(sig):
    woken = subprocess.run([sys.executable, "-c", TAKEN_ELSEWHERE, str(int(sig)), "wakes"], capture_output=True, text=True, timeout=20)
    assert woken.stdout.strip() == ("KeyboardInterrupt" if sig == signal.SIGINT else "Terminated"), woken.stderr
    with pytest.raises(subprocess.TimeoutExpired):  # without main_wakes, the main thread sleeps on
        subprocess.run([sys.executable, "-c", TAKEN_ELSEWHERE, str(int(sig)), "sleeps"], capture_output=True, timeout=3)


def test_ctrl_c_raises_keyboard_interrupt_in_a_process_started_with_sigint_ignored():
    """What a shell's background job, and a test run started from one, inherit: SIGINT ignored,
    so Python installs no KeyboardInterrupt. Inside ctrl_c() (chat at a terminal) Ctrl-C is taken;
    after it, the process ignores SIGINT again, as it was told to."""
    from talkgen import stopping

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stopping.ctrl_c():
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


# A WAKE can be spent without the main thread running the handlers, as when it lands while the
# main thread waits for the GIL at its last check for signals before it goes to sleep in a read.
# Here the main thread takes the WAKE itself (sigtimedwait, with WAKE blocked, so its handler never
# runs) after a signal number was written to the wakeup pipe as a signal's handler writes it: the
# relay must send WAKE again.
SPENT_WAKE = textwrap.dedent("""
    import os, signal
    from talkgen import stopping

    with stopping.main_wakes():
        signal.pthread_sigmask(signal.SIG_BLOCK, {stopping.WAKE})
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd)
        os.write(fd, bytes([signal.SIGINT]))  # a SIGINT, as Python's handler reports it
        first = signal.sigtimedwait({stopping.WAKE}, 10)
        again = signal.sigtimedwait({stopping.WAKE}, 10)
        print(first is not None, again is not None, flush=True)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {stopping.WAKE})
""")


def test_a_wake_the_main_thread_did_not_act_on_is_sent_again():
    out = subprocess.run([sys.executable, "-c", SPENT_WAKE], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True"], out.stdout + out.stderr


def test_a_chat_told_to_stop_keeps_the_turn_and_renders_its_clip_on_resume(tmp_path):
    # 768 px through x264's slow preset keeps the clip rendering for a while after the reply.
    args = ["chat", "--session-dir", "s", "render.size=768", "render.preset=slow", "llm.max_reply_words=25"]
    proc = subprocess.Popen([sys.executable, "-m", "talkgen", *args], cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write("Tell me about the sea.\n")
    proc.stdin.flush()
    events = tmp_path / "s" / "events.jsonl"

    def rendering():
        # The turn is recorded (its reply is whole) and its clip is rendering: the clip starts with the
        # reply's first phrase, so it may render long before the reply ends.
        if not events.is_file():
            return False
        names = [json.loads(line)["event"] for line in events.read_text().splitlines() if line.strip()]
        return "reply" in names and "render_start" in names and len(list((tmp_path / "s").rglob("chunks/.*.tmp-*"))) > 0

    wait_for(rendering, proc)
    kids = children(proc.pid)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 143, err
    # It stopped by itself (the line below is the orderly stop's; the grace period's kill at
    # GRACE_S prints none), long before the clip at 768 px through x264's slow preset would have
    # ended. The bound is half the grace period, not a speed: with its reply, voice and render
    # overlapping, the stop took 6.7 s once on 2 cores under a load of 9 (under 5 s otherwise).
    assert took < stopping.GRACE_S / 2, took
    last = err.strip().splitlines()[-1]
    assert last == ("stopped by SIGTERM: session s keeps 1 turn(s) and 0 clip(s); the clip of turn 1 renders again on resume; "
                    "continue it with talkgen chat --resume s"), err
    assert "Traceback" not in err
    assert temporaries(tmp_path) == []
    assert alive(kids) == []
    history = [json.loads(line) for line in (tmp_path / "s" / "history.jsonl").read_text().splitlines()]
    assert [r["type"] for r in history] == ["turn"]  # no clip_stopped: the resume renders it

    from talkgen.chat.session import unrendered

    assert [t["turn"] for t in unrendered(history)] == [1]


def descendants(pid: int) -> list[int]:
    """Every process under pid: the ranks' launcher, the ranks, each rank's ffmpeg."""
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # a chunk's ffmpeg that finished in between
        return b""


def test_a_two_rank_render_told_to_stop_stops_its_ranks_and_resumes(tmp_path):
    """tp-test on 2 ranks under torchrun: the launcher passes the SIGTERM on, each rank aborts its
    encoder and removes its temporary chunk file, and the rerun starts from the chunks the line names."""
    (tmp_path / "s.txt").write_text(SCRIPT)
    args = [*RENDER, "render.engine=tp-test", "render.nproc=2", "--size", "96"]
    proc = talkgen(args, tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wait_for(lambda: sidecars(tmp_path / "job") >= 3, proc)
    family = descendants(proc.pid)
    assert len([p for p in family if b"talkgen.ranks.worker" in cmdline(p)]) == 2
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 143, err
    assert took < 15, f"took {took:.1f} s to stop"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    match = re.fullmatch(r"stopped by SIGTERM: kept the speech, the plan and (\d+) of (\d+) chunks in job; "
                         r"run the same command again to resume", lines[0])
    assert match, lines[0]
    assert temporaries(tmp_path) == [], "temporary files were left behind"
    assert alive(family) == [], "a launcher, rank or ffmpeg outlived the render"
    kept = int(match.group(1))
    assert kept == sidecars(tmp_path / "job")
    done = incli.talkgen(args, tmp_path, {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    render = next(s for s in json.loads((tmp_path / "o.report.json").read_text())["stages"] if s["name"] == "render")
    assert render["detail"]["reused_chunks"] == kept
