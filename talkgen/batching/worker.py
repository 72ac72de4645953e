"""A batch worker: one engine holder, job after job through the same pipeline as `talkgen render`.

The worker keeps every engine loaded between jobs when the recipe's memory plan allows it
(with every engine resident); when it does not, engines that share a GPU in turn are let go
after their stage, as in a render. A multi-rank avatar's rank group is launched with the
first job that needs it and serves the rest (its files in the worker's own folder).

A job that fails is a result with its one-line reason, never an exception: the next job
runs. Progress goes to the worker's status.json, which the live view reads (on one machine
or across a Ray cluster: the output folder is shared).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import time
import traceback
from pathlib import Path

from talkgen.batching import queue
from talkgen.batching.jobs import JobSpec
from talkgen.errors import TalkgenError
from talkgen.holder import ROLES, Engines
from talkgen.pipeline import Progress


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class StatusProgress(Progress):
    """The pipeline's progress as a small JSON file, rewritten at most four times a second."""

    def __init__(self, path: Path, worker: str, node: str):
        self.path, self.worker, self.node = path, worker, node
        self.state: dict = {"worker": worker, "node": node, "job": None}
        self._last = 0.0
        self.write(force=True)

    def job(self, name: str | None) -> None:
        self.state = {"worker": self.worker, "node": self.node, "job": name, "stage": None, "done": 0, "total": None,
                      "unit": "", "since": time.time()}
        self.write(force=True)

    def stage(self, name: str, total: float | None, unit: str) -> None:
        self.state.update(stage=name, done=0, total=total, unit=unit)
        self.write(force=True)

    def advance(self, n: float = 1) -> None:
        self.state["done"] = self.state.get("done", 0) + n
        self.write()

    def done(self, name: str, cache: str) -> None:
        self.state.update(stage=name, finished=name)
        self.write(force=True)

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        from talkgen.job import write_json_atomic

        try:
            write_json_atomic(self.path, self.state)
        except OSError:
            pass  # the live view is a view: a status file that cannot be written costs nothing else


def keep_for(recipe, engines_needed: set[str]) -> set[str] | str:
    """Every engine, if the memory plan fits them all at once on their devices; else the recipe's own."""
    import copy

    from talkgen.memory import check_placement
    from talkgen.pipeline import resident_roles

    planned = copy.deepcopy(recipe)
    planned.placement.resident = sorted(engines_needed)
    try:
        check_placement(planned, engines_needed)
    except TalkgenError:
        return resident_roles(recipe)
    return "all"


class Worker:
    def __init__(self, out: Path, worker_id: str, node: str | None = None):
        self.out, self.id = out, worker_id
        self.node = node or socket.gethostname()
        self.dir = queue.worker_dir(out, worker_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.engines = Engines(keep="all")
        self.progress = StatusProgress(self.dir / "status.json", worker_id, self.node)
        self.jobs = 0
        self.started = time.time()

    def run(self, spec_data: dict) -> dict:
        """Run one job; its result (done or failed, with one line) for the batch report."""
        from talkgen.pipeline import RenderRequest, engines_needed, run
        from talkgen.inputs import input_kind

        spec = JobSpec(**spec_data)
        video = queue.video_path(self.out, spec.name)
        result = {"name": spec.name, "status": "failed", "error": None, "output": str(video), "worker": self.id,
                  "node": self.node, "wall_s": 0.0, "video_s": 0.0, "cache_hits": 0, "stages": 0, "cost_usd": 0.0,
                  "gpu_hours": 0.0}
        self.progress.job(spec.name)
        t = time.perf_counter()
        try:
            recipe = spec.to_recipe()
            keep = keep_for(recipe, engines_needed(recipe, input_kind(Path(spec.input)), spec.say))
            self.engines.keep = set(ROLES) if keep == "all" else keep
            req = RenderRequest(Path(spec.input), video, recipe, Path(spec.portrait) if spec.portrait else None,
                                queue.job_dir(self.out, spec.name), list(spec.force), spec.from_stage, spec.say)
            rep = run(req, self.progress, engines=self.engines, group_root=self.dir)
        except TalkgenError as exc:
            result["error"] = _one_line(str(exc))
        except OSError as exc:
            result["error"] = _one_line(f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))
        except Exception as exc:  # a bug: one line in the report, the whole traceback in the worker's log
            result["error"] = _one_line(f"{type(exc).__name__}: {exc}")
            self._log(f"job {spec.name} failed:\n{traceback.format_exc()}")
        else:
            from talkgen.job import sha256_file

            result.update(status="done", video_s=rep["video_s"], cache_hits=sum(s["cache"] == "hit" for s in rep["stages"]),
                          stages=len(rep["stages"]), cost_usd=rep["cost"]["cost_usd"], gpu_hours=rep["cost"]["gpu_hours"],
                          srt=rep["artifacts"]["subtitles"], report=rep["artifacts"]["report"],
                          video_sha256=sha256_file(video))
        finally:
            self.progress.job(None)
        self.jobs += 1
        result["wall_s"] = round(time.perf_counter() - t, 3)
        result["peak_rss_mb"] = peak_rss_mb()
        result["worker_info"] = self.info()
        return result

    def info(self) -> dict:
        return {"worker": self.id, "node": self.node, "loads": dict(self.engines.loads), "rank_launches": self.engines.launches,
                "jobs": self.jobs, "peak_rss_mb": peak_rss_mb(), "pid": os.getpid(), "python": sys.executable}

    def check_path(self, probe: str, token: str) -> bool:
        """Whether this worker sees the coordinator's probe file (the output folder is shared)."""
        try:
            return Path(probe).read_text(encoding="utf-8") == token
        except OSError:
            return False

    def close(self) -> None:
        self.engines.close()

    def _log(self, text: str) -> None:
        with open(self.dir / "worker.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}\n")


def _one_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else "failed with no message"


def serve_pipe(conn, out: str, worker_id: str, env: dict) -> None:
    """A local worker process: jobs come in over `conn`, results go back; None ends it."""
    from talkgen.ranks.agent import die_with_parent

    die_with_parent()  # a batch killed outright (SIGKILL) leaves no worker behind
    os.environ.update(env)
    folder = queue.worker_dir(Path(out), worker_id)
    folder.mkdir(parents=True, exist_ok=True)
    # The engines' own chatter goes to the worker's log: stderr is the live view's, stdout the results'.
    log = os.open(folder / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    worker = Worker(Path(out), worker_id)
    try:
        conn.send({"ready": worker.info()})
        while True:
            spec = conn.recv()
            if spec is None:
                break
            conn.send({"result": worker.run(spec)})
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass
    finally:
        worker.close()
        try:
            conn.send({"closed": worker.info()})
        except (OSError, ValueError):
            pass


def read_status(out: Path, worker_id: str) -> dict:
    try:
        return json.loads((queue.worker_dir(out, worker_id) / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
