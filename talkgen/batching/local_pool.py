"""Worker processes on this machine, each with its own share of the placement.

Each worker is a process of its own (spawned, so no CUDA or torch state crosses a fork),
with CUDA_VISIBLE_DEVICES set to its share of the machine's GPUs: the recipe's placement
then counts within that share, as it does under any scheduler. Jobs go in and results come
back over a pipe; a worker process that dies (killed, out of memory) is a lost worker, and
its job goes back to the queue.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path

from talkgen.errors import UsageError


def gpu_span(recipe) -> int:
    """How many of the machine's GPUs (counted from 0) one worker's placement needs."""
    from talkgen.placement import gpu_indices

    p = recipe.placement
    top = -1
    for engine in ("stt", "llm", "tts", "avatar"):
        indices = gpu_indices(getattr(p, engine))
        if indices is None:
            indices = list(range(recipe.render.nproc if engine == "avatar" else 1))
        if indices:
            top = max(top, max(indices))
    return top + 1


def machine_gpus() -> int:
    from talkgen.gpus import read_gpus, visible

    try:
        found = read_gpus()
    except Exception:  # noqa: BLE001 - no nvidia-smi, no driver: no GPUs to share
        return 0
    return len(visible(getattr(found, "gpus", []) or []))


def default_workers(recipe) -> int:
    """From the recipe and the machine: one worker per share of the GPUs (gpu-1x on 8 GPUs: 8),
    one for a recipe that needs every GPU (h100-8x) or none (cpu)."""
    span = gpu_span(recipe)
    if span == 0:
        return 1
    return max(1, machine_gpus() // span)


def shares(recipe, workers: int) -> list[str | None]:
    """Each worker's CUDA_VISIBLE_DEVICES (None: leave it as it is, for a recipe on the CPU)."""
    span = gpu_span(recipe)
    if span == 0:
        return [None] * workers
    have = machine_gpus()
    outer = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [e.strip() for e in outer.split(",") if e.strip()] if outer is not None else [str(i) for i in range(have)]
    if span * workers > len(ids):
        raise UsageError(f"--workers {workers} needs {span * workers} GPUs ({span} each for recipe '{recipe.name}'), "
                         f"and this machine shows {len(ids)}: use --workers {max(1, len(ids) // span)}")
    return [",".join(ids[i * span:(i + 1) * span]) for i in range(workers)]


@dataclass
class LocalWorker:
    id: str
    node: str
    process: multiprocessing.Process
    conn: object
    info: dict = field(default_factory=dict)
    job: str | None = None


class LocalPool:
    def __init__(self, out: Path, recipe, workers: int):
        self.out = out
        self._ctx = multiprocessing.get_context("spawn")
        self._shares = shares(recipe, workers)
        self._next = 0
        self.workers: list[LocalWorker] = []
        self.gone: list[dict] = []  # workers that ended, with their last info
        for _ in range(workers):
            self.start_worker()

    def start_worker(self) -> LocalWorker | None:
        from talkgen.batching.worker import serve_pipe

        share = self._shares[self._next % len(self._shares)]
        wid = f"w{self._next}"
        self._next += 1
        parent, child = self._ctx.Pipe()
        env = {"CUDA_VISIBLE_DEVICES": share} if share is not None else {}
        proc = self._ctx.Process(target=serve_pipe, args=(child, str(self.out), wid, env), name=f"talkgen-{wid}", daemon=True)
        proc.start()
        child.close()
        import socket

        w = LocalWorker(wid, socket.gethostname(), proc, parent)
        self.workers.append(w)
        return w

    def check_shared(self, probe: Path, token: str) -> list[str]:
        return []  # one machine: one filesystem

    def submit(self, worker: LocalWorker, spec: dict, ahead: dict | None = None) -> None:
        """Run `spec` on `worker`; `ahead` is the job it gets next (its look-ahead begins it)."""
        worker.job = spec["name"]
        worker.conn.send({"spec": spec, "ahead": ahead})

    def poll(self, timeout: float) -> list[tuple[LocalWorker, dict | None, str | None]]:
        """(worker, result, None) for each finished job; (worker, None, why) for each worker lost."""
        from multiprocessing.connection import wait

        out = []
        ready = wait([w.conn for w in self.workers] + [w.process.sentinel for w in self.workers], timeout)
        for w in list(self.workers):
            msg = None
            if w.conn in ready:
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):
                    msg = None
            if msg is not None:
                if "ready" in msg:
                    w.info = msg["ready"]
                elif "result" in msg:
                    w.info = msg["result"].pop("worker_info", w.info)
                    w.job = None
                    out.append((w, msg["result"], None))
                continue
            if w.conn in ready or w.process.sentinel in ready:
                w.process.join(timeout=5)
                if w.process.exitcode is not None:
                    code = w.process.exitcode
                    why = f"worker {w.id} died ({_exit_text(code)})"
                    self.workers.remove(w)
                    self.gone.append({**w.info, "lost": why})
                    out.append((w, None, why))
        return out

    def close(self) -> list[dict]:
        """Stop every worker (each finishes nothing more, lets its engines and ranks go); their last infos."""
        for w in self.workers:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        infos = []
        for w in self.workers:
            try:
                if w.conn.poll(30):
                    while True:
                        msg = w.conn.recv()
                        if "closed" in msg:
                            w.info = msg["closed"]
                            break
                        if "result" in msg:
                            w.info = msg["result"].get("worker_info", w.info)
            except (EOFError, OSError):
                pass
            w.process.join(timeout=30)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            infos.append(w.info)
        return infos + self.gone

    def kill(self) -> None:
        for w in self.workers:
            if w.process.is_alive():
                w.process.kill()
        for w in self.workers:
            w.process.join(timeout=10)


def _exit_text(code: int) -> str:
    import signal

    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"
