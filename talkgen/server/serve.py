"""`talkgen serve`: check what was asked, hold the folder, start the workers and the HTTP server.

Everything a person can get wrong on the command line is refused before any model loads, in
one line (exit 2): an address other machines reach without a token, a port taken, a recipe or
an override that does not exist, a folder another batch or server is writing.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from talkgen.errors import TalkgenError, UsageError


@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 8000
    recipe: str = "cpu"
    overrides: list[str] = field(default_factory=list)
    workers: int | None = None
    ray: str | None = None
    out: Path = Path(".talkgen/serve")
    persona: str | None = None
    token_file: Path | None = None
    max_queued: int = 8


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def serve(opts: Options, say: Callable[[str], None] = _stderr) -> None:
    """Run until stopped (Ctrl-C, SIGTERM); a TalkgenError if the workers cannot run. `say` prints
    a line for the person: the address once listening, and when the models are loaded."""
    from talkgen.batching import queue as q
    from talkgen.batching import run as batches
    from talkgen.batching.jobs import build_recipe
    from talkgen.server.auth import check_start

    token = check_start(opts.host, opts.token_file)
    if opts.max_queued < 1:
        raise UsageError(f"--max-queued {opts.max_queued}: give at least 1")
    recipe = build_recipe(opts.recipe, opts.overrides, persona=opts.persona)
    workers = _workers(recipe, opts)
    batches.check_out(opts.out)
    out = opts.out.resolve()
    with q.BatchLock(out):
        sock = _bind(opts.host, opts.port)
        try:
            _run(opts, out, recipe, workers, token, sock, say)
        finally:
            sock.close()


def _workers(recipe, opts: Options) -> int:
    if opts.workers is not None and opts.workers < 1:
        raise UsageError(f"--workers {opts.workers}: give at least 1")
    if opts.ray is not None:
        from talkgen.batching.ray_pool import connect, default_ray_workers

        connect(opts.ray)
        return opts.workers or default_ray_workers(recipe)
    from talkgen.batching.local_pool import default_workers, shares

    workers = opts.workers or default_workers(recipe)
    shares(recipe, workers)  # more workers than GPU shares: refused now
    return workers


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: give a port from 1 to 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port, or stop what holds it") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _run(opts: Options, out: Path, recipe, workers: int, token: str | None, sock: socket.socket, say) -> None:
    import uvicorn

    from talkgen.server.app import State, build
    from talkgen.server.auth import Guard
    from talkgen.server.dispatch import Dispatcher
    from talkgen.server.store import Store

    store = Store(out)
    failed = threading.Event()
    stopping = threading.Event()  # the event streams end when it is set, so uvicorn's shutdown does not wait on them

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            stopping.set()
            super().handle_exit(sig, frame)

    def on_fail(error: str) -> None:
        failed.set()
        stopping.set()
        server.should_exit = True

    dispatcher = Dispatcher(store, opts.recipe, opts.overrides, opts.persona, workers, opts.ray, on_fail)
    state = State(store, dispatcher, recipe.name, workers, recipe.llm.persona, opts.max_queued, stopping)
    config = uvicorn.Config(Guard(build(state), token), log_level="warning", access_log=False, timeout_graceful_shutdown=3,
                            lifespan="off")
    server = Server(config)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    say(f"talkgen serve: http://{shown}:{port}/ (recipe {recipe.name}, {workers} worker(s), jobs in {out}"
        f"{', token required' if token else ''}); loading the models")
    started = time.monotonic()

    def announce() -> None:
        dispatcher.ready.wait()
        if dispatcher.error is None:
            say(f"talkgen serve: ready (models loaded in {time.monotonic() - started:.1f} s)")

    dispatcher.start()
    threading.Thread(target=announce, name="talkgen-ready", daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        state.stopping.set()
        dispatcher.stop()
    if failed.is_set():
        raise TalkgenError(dispatcher.error or "the workers stopped")
