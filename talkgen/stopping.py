"""Being told to stop: SIGTERM and SIGHUP become an exception in the main thread.

A scheduler (Slurm at its time limit, Kubernetes, `timeout`, systemd) stops a job with
SIGTERM, and a closed terminal sends SIGHUP. Python's default for both is to die on the
spot: no message, half-written files, ffmpeg children (in sessions of their own, out of
reach of the signal) left to finish writing files nobody will rename. Here the signal
raises `Terminated` in the main thread instead, so the cleanup that already runs for
Ctrl-C runs for it too: every `finally`, every `except BaseException` that aborts an
encoder and removes its temporary file. The CLI then prints one line and exits 128 + the
signal's number (143 for SIGTERM).

A second SIGTERM, SIGHUP or SIGINT while stopping ends the process at once, and so does a
stop that takes longer than GRACE_S: both kill every child talkgen started and remove every
temporary file it was writing, then exit without further cleanup.

The handlers run in the main thread between two of its bytecodes, wherever it is: inside
track(), inside threading's own code. So they take no lock the main thread could be holding
(the lock here is reentrant) and start no thread (the grace period's clock is started with
handling(), and the first signal only writes to its pipe).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from pathlib import Path
from typing import Iterator, TypeVar

GRACE_S = 20.0  # under the 30 s that Kubernetes and Slurm give before their SIGKILL
SIGNALS = (signal.SIGTERM, signal.SIGHUP)

# Strong references on purpose: an encoder dropped mid-write (its Popen garbage) still has a
# running ffmpeg that would go on to write its file; finished children are pruned in track().
_children: set = set()  # subprocess.Popen objects
_temporaries: set[Path] = set()  # files being written under a temporary name (job.atomic_path)
_lock = threading.RLock()  # reentrant: a second signal's handler may run in the main thread inside track()
_stopping: int = 0  # the signal being handled, 0 when none
_clock = (-1, 0)  # the write end of the grace period's pipe while handling() runs, and the pid it is for (see _grace)
_defer = 0  # depth of deferred() blocks in the main thread
_pending = 0  # a signal that came during one, raised at its end
P = TypeVar("P")


class Terminated(BaseException):
    """talkgen was told to stop. A BaseException, as KeyboardInterrupt is, so `except Exception`
    lets it through; not a KeyboardInterrupt, so chat's "Ctrl-C stops this reply" does not catch it.
    Whoever knows what was kept sets `kept` (e.g. "job X keeps the speech and 3 of 7 chunks")."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.kept = ""
        self.resume = "run the same command again to resume"

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def message(self) -> str:
        return f"stopped by {self.name}: {self.kept or 'finished work is kept'}; {self.resume}"


def track(proc: P) -> P:
    """Remember a child process (a subprocess.Popen) so that a stop can end it; returns it."""
    with _lock:
        for done in [p for p in _children if p.returncode is not None]:
            _children.discard(done)
        _children.add(proc)
    return proc


def temporary(path: Path, writing: bool) -> None:
    """Note that `path` is being written under a temporary name (writing=False: it is gone or renamed)."""
    with _lock:
        (_temporaries.add if writing else _temporaries.discard)(path)


def kill_children() -> None:
    """SIGKILL every tracked child still running, with its process group when it leads one
    (ffmpeg runs in a session of its own; a launcher's ranks share its group)."""
    with _lock:
        procs = list(_children)
    for proc in procs:
        try:
            if proc.poll() is not None:
                continue
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - gone already, or not ours to wait on
            pass


def remove_temporaries() -> None:
    """Delete every file still being written under a temporary name (call after kill_children)."""
    with _lock:
        paths = list(_temporaries)
        _temporaries.clear()
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def stopping() -> int:
    """The signal talkgen is stopping for, or 0."""
    return _stopping


def _now(signum: int, frame=None) -> None:
    """Stop at once: a second signal, or a stop past its grace period."""
    kill_children()
    remove_temporaries()
    os._exit(128 + signum)


def _grace(read_end: int) -> None:
    """The grace period's clock, a thread that handling() starts: the first signal writes its
    number to the pipe; if handling() has not ended GRACE_S later (its end closes the pipe),
    stop at once. Started before any signal, as a handler must not start a thread: Thread.start
    takes threading's own lock, which the main thread may hold at the moment the handler runs."""
    # Blocked here, so that this thread never takes a stop's signal off the main thread's queue.
    signal.pthread_sigmask(signal.SIG_BLOCK, {*SIGNALS, signal.SIGINT, WAKE})
    try:
        started = os.read(read_end, 1)
        if started and not select.select([read_end], [], [], GRACE_S)[0]:
            _now(started[0])
    finally:
        os.close(read_end)


def _first(signum: int, frame) -> None:
    global _stopping, _pending
    if _stopping:
        _now(signum)
    _stopping = signum
    for sig in (*SIGNALS, signal.SIGINT):
        signal.signal(sig, _now)
    fd, pid = _clock
    if pid == os.getpid():  # not in a fork without exec: that would start its parent's clock
        with contextlib.suppress(OSError):  # the clock's pipe is new and empty: this never blocks
            os.write(fd, bytes([signum]))
    if _defer:
        _pending = signum
        return
    raise Terminated(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block a stop must not cut in two, such as starting a child and tracking it (cut in
    between, the child would run on untracked, and write its file after talkgen has gone).
    A stop that comes meanwhile is raised when the block ends. Main thread only: signals are
    handled there; in other threads this does nothing."""
    global _defer, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _defer += 1
    try:
        yield
    finally:
        _defer -= 1
        if not _defer and _pending:
            signum, _pending = _pending, 0
            raise Terminated(signum)


_wakes = 0  # how many times _woken has run: main_wakes' relay counts the main thread's passes


def _woken(signum: int, frame) -> None:
    """WAKE's handler: only counts; being woken is the point (see main_wakes)."""
    global _wakes
    _wakes += 1


WAKE = signal.SIGUSR1  # sent to the main thread alone, to wake it (main_wakes)
WAKE_AGAIN_S = 0.05  # main_wakes: how long the relay waits for WAKE's handler before sending WAKE again


@contextlib.contextmanager
def main_wakes() -> Iterator[None]:
    """While the block runs (in the main thread), a signal that another thread took still wakes
    the main thread, so that its Python handler runs even while the main thread sleeps in a system call.

    The kernel queues a Ctrl-C, SIGTERM or SIGHUP for the whole process and wakes the main
    thread to take it; but whichever thread first unblocks signals takes it off the queue, and
    glibc's pthread_create and CPython's subprocess (around its vfork) both unblock them in the
    thread that calls them: chat's render thread does both for every chunk, and a new thread
    does it as it starts. Python's handler then runs in that thread, which only marks the signal
    for the main thread: asleep in readline's select() at chat's prompt, the main thread is not
    woken, and the Ctrl-C waits for the next key (seen with the kernel's signal tracepoints:
    the main thread woken, the render thread dequeuing the SIGINT microseconds before it ran).

    Here Python's handler, in whichever thread it runs, also writes the signal's number to a
    pipe (signal.set_wakeup_fd); a thread reads the pipe and sends WAKE to the main thread by
    its thread id, which no other thread can take. WAKE's own handler only counts, but
    interrupting the main thread's system call makes Python run the marked handlers there. When
    the main thread took the signal itself, as it mostly does, WAKE only interrupts it once or twice more.

    Blocking the signals in talkgen's threads instead would not do: children inherit the mask of
    the thread that starts them, and ffmpeg and the ranks' launcher are started from such threads.

    One WAKE is not enough: it can land while the main thread is not in a system call, e.g. while
    it waits for the GIL at its last check for signals before a blocking read or select (a loaded
    machine makes that wait long). The main thread then goes to sleep with the signal marked and
    no WAKE left to interrupt it. So the relay sends WAKE again, every WAKE_AGAIN_S, until WAKE's
    own handler has run twice after the signal came: Python runs the marked handlers in one pass,
    and a second pass starts after the first ran _woken, hence after the signal was marked, so it
    runs that signal's handler (the first pass may have passed it by before it was marked).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    main = threading.main_thread().ident
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # set_wakeup_fd's rule: a signal handler must never block
    leaving = threading.Event()

    def relay() -> None:
        try:
            while data := os.read(read_end, 64):
                if all(sig == WAKE for sig in data):
                    continue
                # Two runs of _woken from now on: see the docstring. Between two WAKEs the relay
                # waits, so a main thread busy in C code gets one WAKE a WAKE_AGAIN_S, not a flood.
                done = _wakes + 2
                while _wakes < done and not leaving.is_set():
                    signal.pthread_kill(main, WAKE)
                    leaving.wait(WAKE_AGAIN_S)
        finally:
            os.close(read_end)

    saved_handler = signal.signal(WAKE, _woken)
    saved_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    thread = threading.Thread(target=relay, name="talkgen-signal-relay", daemon=True)
    thread.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(saved_fd)
        leaving.set()  # a relay still sending WAKE stops
        os.close(write_end)  # the relay reads to the end of the pipe and leaves
        thread.join(timeout=5)
        if not thread.is_alive():  # else a late WAKE must still find a handler: leave _woken in place
            signal.signal(WAKE, saved_handler if saved_handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def ctrl_c() -> Iterator[None]:
    """While the block runs (in the main thread), Ctrl-C raises KeyboardInterrupt, even in a process
    that was started with SIGINT ignored.

    A shell ignores SIGINT in what a script starts in the background (`cmd &` without job control),
    nohup-like launchers and test runners started that way pass it on, and Python then installs no
    KeyboardInterrupt at all. For chat at a terminal, where Ctrl-C is how the person stops a reply or
    a clip, that left no way to stop one (and chat's Ctrl-C tests failed whenever the suite ran from
    a background job). A render keeps what it inherited: ignoring Ctrl-C is what a background job asks for.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not a stop's _now: that one stays
            signal.signal(signal.SIGINT, saved if saved is not None else signal.SIG_DFL)


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM and SIGHUP raise Terminated there.

    Child processes that inherit this (a fork) should install their own handling: the
    exception only reaches the thread and process that run the block.
    """
    global _stopping, _pending, _clock
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_end, write_end = os.pipe()
    _clock = (write_end, os.getpid())
    threading.Thread(target=_grace, args=(read_end,), name="talkgen-grace", daemon=True).start()
    saved = {sig: signal.getsignal(sig) for sig in (*SIGNALS, signal.SIGINT)}
    for sig in SIGNALS:
        signal.signal(sig, _first)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        os.close(write_end)  # the clock stops: the stop, if any, finished in time
        _clock = (-1, 0)
        _stopping = _pending = 0
