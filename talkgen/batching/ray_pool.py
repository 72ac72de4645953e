"""Worker actors on a Ray cluster (the talkgen[ray] extra).

Each worker is one actor holding a batch Worker (its engine holder), placed in a placement
group of its own with one bundle: the GPUs its placement needs (all on one node, so a
5-rank LiveAvatar worker gets its 5 GPUs together) and a CPU per rank. Ray sets the
actor's CUDA_VISIBLE_DEVICES, and the recipe's placement counts within it.

Jobs are pulled from the coordinator's queue one at a time, each with the job the worker
gets next (which its look-ahead begins); results come back as the actor's return values. An actor whose process or node dies raises on its pending result:
the coordinator gives the job back to the queue and another worker resumes it from its
job folder, which is why the output folder must be one path that every node sees
(check_shared, before the first job).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from talkgen.errors import UsageError

START_TIMEOUT_S = 60.0  # how long a first worker may wait for its resources
REPLACE_TIMEOUT_S = 5.0  # a replacement that finds no room is given up quickly: the others carry on


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'talkgen[ray]' (./install.sh installs it)") from None
    return ray


def connect(address: str) -> None:
    """Join a running cluster: 'auto' (the one this machine belongs to) or HOST:PORT of its head."""
    ray = _ray()
    if ray.is_initialized():
        return
    if address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, logging_level="ERROR",
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"no Ray cluster at --ray {address} ({first[:200]}): start one with `ray start --head`, "
                         "or give the head's HOST:PORT") from None


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """A head that is not there is one line now, not minutes of Ray's own retries."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--ray {address}: give auto or the head's HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(f"no Ray cluster at --ray {address} ({exc.strerror or exc}): start one with `ray start --head`, "
                         "or give the head's HOST:PORT") from None


def default_ray_workers(recipe) -> int:
    """One worker per share of the cluster's GPUs; on CPUs, one per node."""
    from talkgen.batching.local_pool import gpu_span

    ray = _ray()
    span = gpu_span(recipe)
    if span == 0:
        return max(1, sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1))
    return max(1, int(ray.cluster_resources().get("GPU", 0)) // span)


class WorkerActor:
    """What runs inside each actor: a batch Worker on the actor's node."""

    def __init__(self, out: str, worker_id: str):
        import ray

        from talkgen.batching.worker import Worker

        self.worker = Worker(Path(out), worker_id, node=ray.get_runtime_context().get_node_id())

    def info(self) -> dict:
        return self.worker.info()

    def run(self, spec: dict, ahead: dict | None = None) -> dict:
        return self.worker.run(spec, ahead)

    def check_path(self, probe: str, token: str) -> bool:
        return self.worker.check_path(probe, token)

    def close(self) -> dict:
        self.worker.close()
        return self.worker.info()


@dataclass
class RayWorker:
    id: str
    node: str
    actor: object
    group: object
    info: dict = field(default_factory=dict)
    job: str | None = None
    ref: object = None


class RayPool:
    def __init__(self, out: Path, recipe, workers: int, address: str = "auto"):
        from talkgen.batching.local_pool import gpu_span

        connect(address)
        self.out = out
        self._gpus = gpu_span(recipe)
        self._cpus = max(1, recipe.render.nproc) if recipe.render.nproc > 1 else 1
        self._next = 0
        self.workers: list[RayWorker] = []
        self.gone: list[dict] = []
        for _ in range(workers):
            self.start_worker(START_TIMEOUT_S)
        if not self.workers:
            raise UsageError(f"the Ray cluster has no room for a worker ({self._bundle()}): add nodes, or use fewer GPUs per worker")

    def _bundle(self) -> dict:
        return {"CPU": self._cpus, **({"GPU": self._gpus} if self._gpus else {})}

    def start_worker(self, timeout_s: float = REPLACE_TIMEOUT_S) -> RayWorker | None:
        ray = _ray()
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        wid = f"r{self._next}"
        self._next += 1
        group = placement_group([self._bundle()], strategy="STRICT_PACK")
        ready, _ = ray.wait([group.ready()], timeout=timeout_s)
        if not ready:
            remove_placement_group(group)
            return None
        cls = ray.remote(num_cpus=self._cpus, num_gpus=self._gpus, max_restarts=0, max_task_retries=0)(WorkerActor)
        actor = cls.options(scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=group,
                                                                                 placement_group_bundle_index=0),
                            name=None).remote(str(self.out), wid)
        try:
            info = ray.get(actor.info.remote(), timeout=max(timeout_s, 120.0))
        except Exception:  # noqa: BLE001 - it did not start: nothing of it is kept
            ray.kill(actor)
            remove_placement_group(group)
            return None
        w = RayWorker(wid, info["node"], actor, group, info)
        self.workers.append(w)
        return w

    def check_shared(self, probe: Path, token: str) -> list[str]:
        ray = _ray()
        seen = ray.get([w.actor.check_path.remote(str(probe), token) for w in self.workers], timeout=120)
        return [f"Ray node {w.node}" for w, ok in zip(self.workers, seen) if not ok]

    def submit(self, worker: RayWorker, spec: dict, ahead: dict | None = None) -> None:
        """Run `spec` on `worker`; `ahead` is the job it gets next (its look-ahead begins it)."""
        worker.job = spec["name"]
        worker.ref = worker.actor.run.remote(spec, ahead)

    def poll(self, timeout: float) -> list[tuple[RayWorker, dict | None, str | None]]:
        ray = _ray()
        running = {w.ref: w for w in self.workers if w.ref is not None}
        if not running:
            import time

            time.sleep(timeout)
            return []
        ready, _ = ray.wait(list(running), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            w = running[ref]
            w.ref, w.job = None, None
            try:
                result = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the actor or its node died: the job goes back
                why = f"worker {w.id} on Ray node {w.node[:12]} was lost ({type(exc).__name__})"
                self.workers.remove(w)
                self.gone.append({**w.info, "lost": why})
                self._forget(w)
                out.append((w, None, why))
                continue
            w.info = result.pop("worker_info", w.info)
            out.append((w, result, None))
        return out

    def _forget(self, w: RayWorker) -> None:
        ray = _ray()
        from ray.util.placement_group import remove_placement_group

        try:
            ray.kill(w.actor)
        except Exception:  # noqa: BLE001 - already gone with its node
            pass
        try:
            remove_placement_group(w.group)
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> list[dict]:
        ray = _ray()
        infos = []
        for w in self.workers:
            try:
                w.info = ray.get(w.actor.close.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - its last info is the one it sent with its last result
                pass
            infos.append(w.info)
            self._forget(w)
        self.workers = []
        return infos + self.gone

    def kill(self) -> None:
        for w in self.workers:
            self._forget(w)
        self.workers = []
