"""A batch worker: one engine holder, job after job through the same pipeline as `talkgen render`.

The worker keeps every engine loaded between jobs when the recipe's memory plan allows it
(with every engine resident); when it does not, engines that share a GPU in turn are let go
after their stage, as in a render. A multi-rank avatar's rank group is launched with the
first job that needs it and serves the rest (its files in the worker's own folder).

While a job's picture renders, the worker makes the text and voice of the next job it was
given (its look-ahead: the stages up to `speak`, whose engines the avatar does not use), so
the LLM and the voice are not idle while the avatar works. It needs every engine resident.

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
import threading
import time
import traceback
from pathlib import Path

from talkgen.batching import queue
from talkgen.batching.job_events import job_progress
from talkgen.batching.jobs import JobSpec
from talkgen.errors import TalkgenError
from talkgen.holder import ROLES, Engines
from talkgen.stages import Progress

AHEAD_UNTIL = "speak"  # a look-ahead runs the next job until its speech: transcript, reply and speech


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class StatusProgress(Progress):
    """The pipeline's progress as a small JSON file, rewritten at most four times a second."""

    def __init__(self, path: Path, worker: str, node: str):
        self.path, self.worker, self.node = path, worker, node
        self.state: dict = {"worker": worker, "node": node, "job": None}
        self._last = 0.0
        self._lock = threading.RLock()  # the job and the look-ahead report from two threads
        self.front_done = threading.Event()  # set when the running job is past its look-ahead stages
        self.front_done.set()
        self.write(force=True)

    def job(self, name: str | None) -> None:
        with self._lock:  # else a look-ahead's stage set between the read and the new state is lost
            ahead = self.state.get("ahead")
            self.state = {"worker": self.worker, "node": self.node, "job": name, "stage": None, "done": 0, "total": None,
                          "unit": "", "since": time.time(), **({"ahead": ahead} if ahead else {})}
            self.write(force=True)

    def ahead(self, name: str | None, stage: str | None = None) -> None:
        """The look-ahead's job and stage ("q3 reply"), beside the running job."""
        with self._lock:
            if name is None:
                self.state.pop("ahead", None)
            else:
                self.state["ahead"] = f"{name} {stage}" if stage else name
            self.write(force=True)

    def stage(self, name: str, total: float | None, unit: str) -> None:
        self.state.update(stage=name, done=0, total=total, unit=unit)
        self.write(force=True)

    def advance(self, n: float = 1, stage: str = "") -> None:
        self.state["done"] = self.state.get("done", 0) + n
        self.write()

    def done(self, name: str, cache: str) -> None:
        self.state.update(stage=name, finished=name)
        self.write(force=True)
        if name == AHEAD_UNTIL:
            self.front_done.set()

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        from talkgen.job import write_json_atomic

        with self._lock:
            try:
                write_json_atomic(self.path, dict(self.state))
            except OSError:
                pass  # the live view is a view: a status file that cannot be written costs nothing else


class AheadProgress(Progress):
    """A look-ahead's progress: its stage, shown beside the running job's."""

    def __init__(self, status: StatusProgress, name: str):
        self.status, self.name = status, name

    def stage(self, name: str, total: float | None, unit: str) -> None:
        self.status.ahead(self.name, name)


def keep_for(recipe, engines_needed: set[str]) -> set[str] | str:
    """Every engine, if the memory plan fits them all at once on their devices; else the recipe's own."""
    from talkgen.pipeline import resident_roles
    from talkgen.sequencer import fits_together

    return "all" if fits_together(recipe, engines_needed) else resident_roles(recipe)


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
        self._ahead: dict[str, tuple[threading.Thread, dict]] = {}  # job name -> its look-ahead and what it made

    def run(self, spec_data: dict, ahead: dict | None = None) -> dict:
        """Run one job; its result (done or failed, with one line) for the batch report.
        `ahead` is the job this worker runs next: its look-ahead starts once this job is past its voice."""
        spec = JobSpec(**spec_data)
        made = self._finish_ahead(spec.name)
        video = queue.video_path(self.out, spec.name)
        result = {"name": spec.name, "status": "failed", "error": None, "output": str(video), "worker": self.id,
                  "node": self.node, "wall_s": 0.0, "video_s": 0.0, "cache_hits": 0, "stages": 0, "cost_usd": 0.0,
                  "gpu_hours": 0.0}
        self.progress.job(spec.name)
        t = time.perf_counter()
        try:
            recipe = spec.to_recipe()
            keep = self._keep(spec, recipe)
            self.engines.keep = set(ROLES) if keep == "all" else keep
            req = self._request(spec, recipe, made_earlier=made)
            self.progress.front_done.clear()
            if ahead is not None and keep == "all":
                self._look_ahead(JobSpec(**ahead))
            rep = self._run(req, job_progress(self.progress, req.job_dir))
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
            self.progress.front_done.set()
            self.progress.job(None)
        self.jobs += 1
        result["wall_s"] = round(time.perf_counter() - t, 3)
        result["peak_rss_mb"] = peak_rss_mb()
        result["worker_info"] = self.info()
        return result

    def _request(self, spec: JobSpec, recipe, **extra):
        from talkgen.pipeline import RenderRequest

        return RenderRequest(Path(spec.input), queue.video_path(self.out, spec.name), recipe,
                             Path(spec.portrait) if spec.portrait else None, queue.job_dir(self.out, spec.name),
                             list(spec.force), spec.from_stage, spec.say, history=list(spec.history),
                             live=spec.live and extra.get("until") is None, **extra)

    def _run(self, req, progress: Progress | None = None) -> dict:
        from talkgen.pipeline import run

        return run(req, progress or self.progress, engines=self.engines, group_root=self.dir)

    @staticmethod
    def _keep(spec: JobSpec, recipe) -> set[str] | str:
        from talkgen.inputs import input_kind
        from talkgen.pipeline import engines_needed
        from talkgen.stages import Source

        return keep_for(recipe, engines_needed(recipe, Source(input_kind(Path(spec.input)), say=spec.say)))

    def _look_ahead(self, spec: JobSpec) -> None:
        """Start making `spec`'s text and voice in a thread of its own, once the running job is past
        its own (the two never use the same engine at once); only if every engine stays resident."""
        if spec.name in self._ahead:
            return
        try:
            recipe = spec.to_recipe()
            if self._keep(spec, recipe) != "all":
                return
        except (TalkgenError, OSError):
            return  # its own run reports what is wrong with it
        made: dict[str, float] = {}
        req = self._request(spec, recipe, until=AHEAD_UNTIL)

        def work() -> None:
            self.progress.front_done.wait()
            try:
                stages = self._run(req, job_progress(AheadProgress(self.progress, spec.name), req.job_dir))["stages"]
                made.update({s.name: s.wall_s for s in stages if s.cache == "miss"})
            except (TalkgenError, OSError):
                pass  # the job's own run meets it again and reports it in one line
            except Exception:  # noqa: BLE001 - a bug: logged; the job's own run meets it again
                self._log(f"look-ahead of {spec.name} failed:\n{traceback.format_exc()}")
            finally:
                self.progress.ahead(None)

        thread = threading.Thread(target=work, name=f"talkgen-ahead-{spec.name}", daemon=True)
        self._ahead[spec.name] = (thread, made)
        thread.start()

    def _finish_ahead(self, name: str | None = None) -> dict[str, float]:
        """Wait for the look-ahead of job `name` (every look-ahead, for None); the stages it made, with their times."""
        names = [name] if name is not None else list(self._ahead)
        made: dict[str, float] = {}
        for n in names:
            entry = self._ahead.pop(n, None)
            if entry is not None:
                entry[0].join()
                made.update(entry[1])
        return made

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
        self._finish_ahead()
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
            msg = conn.recv()
            if msg is None:
                break
            conn.send({"result": worker.run(msg["spec"], msg.get("ahead"))})
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
