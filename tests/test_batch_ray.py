"""talkgen batch on a real Ray cluster of three nodes started on this machine (loopback only),
with a node removed while its worker renders: its job goes back and the other worker resumes it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Loopback only: Ray otherwise swaps 127.0.0.1 for the machine's own address when it connects.
# Ray's constant for single-machine clusters, read when ray is imported (here, by the batch's
# process and by every node's processes, which inherit it).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
from ray.cluster_utils import Cluster  # noqa: E402  (the talkgen[ray] extra, which install.sh installs)

pytestmark = pytest.mark.slow

LOOPBACK = {"node_ip_address": "127.0.0.1", "include_dashboard": False}


@pytest.fixture
def cluster():
    # The head runs no workers (no CPU to offer), so each of the two worker nodes hosts one worker.
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **LOOPBACK})
    try:
        nodes = [c.add_node(num_cpus=1, **LOOPBACK) for _ in range(2)]
        c.wait_for_nodes(timeout=120)
        yield c, nodes
    finally:
        c.shutdown()


def _statuses(out: Path) -> list[dict]:
    found = []
    for path in (out / ".talkgen-batch" / "workers").glob("r*/status.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return found


def test_a_node_removed_mid_batch_gives_its_job_back_and_nothing_is_lost(cluster, tmp_path):
    c, nodes = cluster
    (tmp_path / "in").mkdir()
    for i in range(4):
        (tmp_path / "in" / f"q{i}.txt").write_text(" ".join(f"Word{i} number {k}." for k in range(16)) + "\n")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "talkgen", "batch", "in", "-o", "out", "--say", "--size", "96", "render.max_chunk_s=1",
         "render.min_chunk_s=0.5", "--ray", c.address, "--json", "-q"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wait until a worker is inside a job with a finished chunk, then take its node away.
        removed = victim = None
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and removed is None:
            for st in _statuses(out):
                job = st.get("job")
                if job and len(list((out / ".talkgen-batch" / "jobs" / job / "chunks").glob("*.mp4.json"))) >= 1:
                    node = next((n for n in nodes if n.node_id == st["node"]), None)
                    if node is not None:
                        victim, removed = (st["worker"], job), node
                        c.remove_node(node, allow_graceful=False)
                        break
            time.sleep(0.05)
        assert removed is not None, "no worker reached a finished chunk in time"
        kept = len(list((out / ".talkgen-batch" / "jobs" / victim[1] / "chunks").glob("*.mp4.json")))
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    rep = json.loads(stdout)
    assert [j["status"] for j in rep["jobs"]] == ["done"] * 4  # no job lost
    lost = [w for w in rep["workers"] if w.get("lost")]
    assert [w["worker"] for w in lost] == [victim[0]] and removed.node_id[:12] in lost[0]["lost"]
    job = next(j for j in rep["jobs"] if j["name"] == victim[1])
    assert job["worker"] != victim[0] and job["node"] != removed.node_id  # resumed elsewhere
    own = json.loads((out / f"{victim[1]}.report.json").read_text())
    render = next(s for s in own["stages"] if s["name"] == "render")
    assert render["detail"]["reused_chunks"] >= kept >= 1  # from its finished chunks, nothing redone
    assert own["check"]["ok"]
    survivors = [w for w in rep["workers"] if not w.get("lost")]
    assert survivors and all(w["loads"]["puppet"] == 1 for w in survivors)
    assert {j["node"] for j in rep["jobs"]} <= {n.node_id for n in nodes}


def _can_hide_folders() -> bool:
    """Whether this machine lets a process mount over a folder in a namespace of its own (root on Linux)."""
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _can_hide_folders(), reason="needs unshare -m (root on Linux) to give a node its own filesystem view")
def test_a_node_that_cannot_see_the_output_folder_stops_the_batch_before_any_job(tmp_path):
    """A real node that does not share the output folder: it joins the cluster from a mount
    namespace in which the test's folder is an empty tmpfs, as a node on another machine sees
    a path that is not on a shared filesystem."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **LOOPBACK})
    node = None
    log = open(tmp_path.parent / f"{tmp_path.name}-node.log", "w")  # outside the folder the node cannot see
    try:
        node = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none "$1" && exec "$2" "$3" "$4"', "sh", str(tmp_path),
             sys.executable, str(Path(__file__).with_name("ray_hidden_node.py")), c.address],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        import ray

        ray.init(address=c.address)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and ray.cluster_resources().get("CPU", 0) < 1:
                time.sleep(0.5)
            assert ray.cluster_resources().get("CPU", 0) >= 1, Path(log.name).read_text()[-2000:]
        finally:
            ray.shutdown()
        (tmp_path / "q.txt").write_text("Hello there.\n")
        proc = subprocess.run([sys.executable, "-m", "talkgen", "batch", "q.txt", "-o", "out", "--say", "--ray", c.address],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        if node is not None:
            os.killpg(node.pid, signal.SIGTERM)
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        log.close()
        c.shutdown()
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "is not visible from Ray node" in lines[-1] and "shared filesystem" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "q.mp4").exists() and not (tmp_path / "out" / "batch.report.json").exists()
