"""The batch: finished jobs skipped, the others handed to warm workers, failures kept apart.

The coordinator (this process) owns the queue on disk and batch.report.json; workers
(processes on this machine, or Ray actors) hold the engines and run the pipeline. A job
whose worker is lost (killed, its node gone) goes back to the queue and another worker
resumes it from its job folder's finished stages and chunks; a job that loses two
workers fails with that reason rather than taking a third.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from pathlib import Path
from typing import Callable

from talkgen.batching import queue as q
from talkgen.batching.cost import batch_cost, describe
from talkgen.batching.jobs import JobSpec
from talkgen.errors import UsageError

MAX_LOSSES = 2  # workers a job may lose before it fails


def check_out(out: Path) -> None:
    import tempfile

    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out} is a file: batch writes a folder of videos, so name a folder")
    if out.suffix.lower() == ".mp4":
        raise UsageError(f"-o {out} looks like a video: batch writes <name>.mp4 for each job into a folder, so name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".talkgen-write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"output folder {out} cannot be written ({exc.strerror or exc}): choose another -o") from None


def prepare(inputs: list[Path], opts, workers: int | None, ray_address: str | None) -> tuple[list[JobSpec], int]:
    """The jobs and how many workers, every mistake found before any job runs (UsageError, exit 2)."""
    from talkgen.batching.jobs import read_jobs
    from talkgen.sequencer import stale_stages

    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers}: give at least 1")
    stale_stages(list(opts.force), opts.from_stage)  # an unknown stage: before anything else
    specs = read_jobs(inputs, opts)
    first = specs[0].to_recipe()
    if ray_address is not None:
        from talkgen.batching.ray_pool import connect, default_ray_workers

        connect(ray_address)
        return specs, workers or default_ray_workers(first)
    from talkgen.batching.local_pool import default_workers, shares

    workers = workers or default_workers(first)
    shares(first, workers)  # more workers than GPU shares: refused now
    return specs, workers


def plan(specs: list[JobSpec], out: Path, workers: int) -> dict:
    """What --dry-run prints: the cost and each job, with whether it is already finished."""
    queue = q.Queue(out) if q.state_dir(out).is_dir() else None
    cost = batch_cost(specs, workers)
    jobs = [{"name": s.name, "input": s.input, "mode": "say" if s.say else "reply", "output": str(q.video_path(out, s.name)),
             "video_s": cost["per_job_video_s"][s.name], "finished": bool(queue and queue.finished(s.name, s.digest()))}
            for s in specs]
    return {"cost": cost, "jobs": jobs, "output": str(out)}


def run_batch(specs: list[JobSpec], out: Path, workers: int, ray_address: str | None = None, console=None,
              live: bool = True, announce: str | None = None) -> dict:
    """Run every job not already finished; return batch.report.json's content. `announce` (the
    cost) is printed once the batch holds its folder, so a refused batch prints its one line alone."""
    from rich.console import Console

    from talkgen.batching.live import LiveView

    console = console or Console(stderr=True)
    out = out.resolve()
    started = time.perf_counter()
    with q.BatchLock(out):
        if announce and live:
            console.print(announce, highlight=False, soft_wrap=True, markup=False)
        queue = q.Queue(out)
        results: dict[str, dict] = {}
        todo: deque[JobSpec] = deque()
        for s in specs:
            found = queue.finished(s.name, s.digest())
            if found is not None:
                results[s.name] = {**found, "skipped": True}
            else:
                todo.append(s)
        view = LiveView(console, len(specs), enabled=live)
        if results:
            view.event(f"{len(results)} job(s) already finished: skipped")
        infos: list[dict] = []
        if todo:
            pool = _pool(out, specs[0].to_recipe(), workers, ray_address)
            try:
                _check_shared(pool, out)
                infos = _drive(pool, queue, todo, results, view, out)
            except BaseException:
                pool.kill()
                view.close()
                raise
        view.close()
        report = _report(specs, results, infos, time.perf_counter() - started, out)
        from talkgen.job import write_json_atomic

        write_json_atomic(out / "batch.report.json", report)
        return report


def _pool(out: Path, recipe, workers: int, ray_address: str | None):
    """The warm workers, placed for `recipe` (the first job's)."""
    if ray_address is not None:
        from talkgen.batching.ray_pool import RayPool

        return RayPool(out, recipe, workers, ray_address)
    from talkgen.batching.local_pool import LocalPool

    return LocalPool(out, recipe, workers)


def run_feed(feed: Callable[[], list[JobSpec]], queue: q.Queue, recipe, workers: int, ray_address: str | None = None,
             poll_s: float = 0.05) -> list[dict]:
    """The batch's loop for jobs that keep coming (`talkgen serve`): `feed()` is asked on every turn
    of the loop for the jobs added since, and ends the loop by raising; the workers are killed then,
    and the jobs they were running resume from their chunks in the next run. The caller holds the
    output folder's lock and watches the jobs through `queue`, which the loop writes as a batch's."""
    from rich.console import Console

    from talkgen.batching.live import LiveView

    pool = _pool(queue.out, recipe, workers, ray_address)
    try:
        _check_shared(pool, queue.out)
        return _drive(pool, queue, deque(), {}, LiveView(Console(stderr=True), 0, enabled=False), queue.out, feed, poll_s)
    except BaseException:
        pool.kill()
        raise


def _check_shared(pool, out: Path) -> None:
    """Every worker must see the output folder this process writes: a probe file, read back by each."""
    probe = q.state_dir(out) / f"probe-{secrets.token_hex(4)}"
    token = secrets.token_hex(16)
    probe.write_text(token, encoding="utf-8")
    try:
        blind = pool.check_shared(probe, token)
    finally:
        probe.unlink(missing_ok=True)
    if blind:
        raise UsageError(f"the output folder {out} is not visible from {', '.join(blind)}: every worker writes its videos "
                         "there, so use a path every node sees (a shared filesystem mounted at the same place)")


def _drive(pool, queue: q.Queue, todo: deque, results: dict, view, out: Path,
           feed: Callable[[], list[JobSpec]] | None = None, poll_s: float = 0.25) -> list[dict]:
    """Hand `todo` to the workers until every job is done or failed; with a `feed` (run_feed),
    take its new jobs on every turn and go on while it has none."""
    from talkgen.batching.worker import read_status

    specs = {s.name: s for s in todo}
    losses: dict[str, int] = {}
    busy: dict[str, str] = {}  # worker id -> job name
    # worker id -> the job it runs next, which its look-ahead is already making (text, voice).
    # A job is promised ahead only while every worker has one waiting, so none idles at the end.
    promised: dict[str, JobSpec] = {}
    walls: list[float] = []
    plans: dict[str, list[int]] = {}  # each running job's chunk end frames, for the live view
    remaining = len(todo)
    starts_left = 2 * len(pool.workers) + len(todo)  # workers that die at start must not be replaced forever
    while remaining or feed is not None:
        for spec in feed() if feed is not None else ():
            specs[spec.name] = spec
            todo.append(spec)
            remaining += 1
            starts_left += 1
        for w in [w for w in pool.workers if w.id not in busy]:
            spec = promised.pop(w.id, None) or (todo.popleft() if todo else None)
            if spec is None:
                break
            nxt = todo.popleft() if len(todo) >= len(pool.workers) else None
            busy[w.id] = spec.name
            queue.set(spec.name, spec.digest(), "running", worker=w.id, node=w.node, promised_to=None)
            if nxt is not None:
                promised[w.id] = nxt
                queue.set(nxt.name, nxt.digest(), "pending", promised_to=w.id)
            pool.submit(w, spec.__dict__, nxt.__dict__ if nxt is not None else None)
        if not pool.workers:
            for name in list(busy.values()) + [s.name for s in promised.values()] + [s.name for s in todo]:
                results[name] = _failed(name, out, "no worker is left to run it (every worker was lost)")
                queue.set(name, specs[name].digest(), "failed", error=results[name]["error"])
            break
        for w, result, lost in pool.poll(poll_s):
            name = busy.pop(w.id, None)
            if lost is not None and w.id in promised:
                back = promised.pop(w.id)  # never started as its own job: back to the queue, no loss counted
                todo.appendleft(back)
                queue.set(back.name, back.digest(), "pending", promised_to=None)
            if lost is not None:
                if name is None:
                    if starts_left > 0:
                        starts_left -= 1
                        pool.start_worker()
                    continue
                losses[name] = losses.get(name, 0) + 1
                if losses[name] >= MAX_LOSSES:
                    results[name] = _failed(name, out, f"{lost}, twice while running this job: it was not retried again")
                    queue.set(name, specs[name].digest(), "failed", error=results[name]["error"])
                    remaining -= 1
                    view.event(f"failed {name}: {results[name]['error']}", "red")
                else:
                    todo.appendleft(specs[name])  # given back: the next worker resumes it from its finished chunks
                    queue.set(name, specs[name].digest(), "pending", lost=lost)
                    view.event(f"{lost}; {name} goes back to the queue", "yellow")
                if starts_left > 0:
                    starts_left -= 1
                    pool.start_worker()
                continue
            if name is None:
                continue
            results[name] = result
            remaining -= 1
            walls.append(result["wall_s"])
            queue.set(name, specs[name].digest(), result["status"], result=result, error=result.get("error"),
                      worker=result["worker"], node=result["node"])
            if result["status"] == "done":
                view.event(f"done {name} ({result['video_s']:.1f} s of video in {result['wall_s']:.1f} s, worker {result['worker']})")
            else:
                view.event(f"failed {name}: {result['error']}", "red")
        statuses = [_with_chunk({**read_status(out, w.id), "worker": w.id, "node": w.node,
                                 **({} if w.id in busy else {"job": None})}, out, plans) for w in pool.workers]
        active = max(1, len(pool.workers))
        left = (sum(walls) / len(walls)) * remaining / active if walls else None
        done = sum(1 for r in results.values() if r["status"] == "done")
        view.update(done, len(results) - done, statuses, left)
    return pool.close()


def _with_chunk(status: dict, out: Path, plans: dict[str, list[int]]) -> dict:
    """A worker's status with the chunk it is rendering ("3/12"), from the job's plan."""
    job = status.get("job")
    if not job or status.get("stage") != "render":
        return status
    if job not in plans:
        from talkgen.chunks import Plan

        try:
            plans[job] = [c.end_frame for c in Plan.load(q.job_dir(out, job) / "plan.json").chunks]
        except (OSError, ValueError, KeyError, TypeError):
            return status
    ends = plans[job]
    done = status.get("done", 0)
    status["chunk"] = f"{min(len(ends), 1 + sum(1 for e in ends if e <= done))}/{len(ends)}"
    return status


def _failed(name: str, out: Path, error: str) -> dict:
    return {"name": name, "status": "failed", "error": error, "output": str(q.video_path(out, name)), "worker": None,
            "node": None, "wall_s": 0.0, "video_s": 0.0, "cache_hits": 0, "stages": 0, "cost_usd": 0.0, "gpu_hours": 0.0}


def _report(specs: list[JobSpec], results: dict, infos: list[dict], wall_s: float, out: Path) -> dict:
    jobs = []
    for s in specs:
        r = dict(results.get(s.name) or _failed(s.name, out, "not run"))
        r.pop("worker_info", None)
        r.setdefault("skipped", False)
        jobs.append(r)
    done = [j for j in jobs if j["status"] == "done"]
    video_s = sum(j["video_s"] for j in done)
    ran = [j for j in done if not j["skipped"]]
    gpu_hours = sum(j.get("gpu_hours", 0.0) for j in ran)
    cost_usd = sum(j.get("cost_usd", 0.0) for j in ran)
    workers = [{"worker": i.get("worker"), "node": i.get("node"), "loads": i.get("loads", {}),
                "rank_launches": i.get("rank_launches", 0), "jobs": i.get("jobs", 0), "peak_rss_mb": i.get("peak_rss_mb"),
                **({"lost": i["lost"]} if i.get("lost") else {})} for i in infos if i]
    return {
        "output": str(out),
        "jobs": jobs,
        "workers": workers,
        "totals": {
            "jobs": len(jobs), "done": len(done), "failed": len(jobs) - len(done), "skipped": sum(j["skipped"] for j in jobs),
            "wall_s": round(wall_s, 3), "video_minutes": round(video_s / 60, 4), "gpu_hours": round(gpu_hours, 6),
            "cost_usd": round(cost_usd, 6),
            "cost_per_video_minute_usd": round(cost_usd / (video_s / 60), 6) if video_s else 0.0,
            # Video seconds rendered per wall second, by this run (jobs skipped as finished cost it nothing).
            "throughput": round(sum(j["video_s"] for j in ran) / wall_s, 4) if wall_s else 0.0,
        },
    }


def summary_lines(report: dict) -> list[str]:
    t = report["totals"]
    lines = [f"{t['done']} of {t['jobs']} job(s) done ({t['skipped']} already finished), {t['failed']} failed; "
             f"{t['video_minutes'] * 60:.1f} s of video in {t['wall_s']:.1f} s ({t['throughput']:.2f} video s per s)"]
    for j in report["jobs"]:
        if j["status"] != "done":
            lines.append(f"failed {j['name']}: {j['error']}")
    return lines


def exit_code(report: dict) -> int:
    return 0 if report["totals"]["failed"] == 0 else 1


__all__ = ["run_batch", "plan", "check_out", "describe", "summary_lines", "exit_code"]
