"""A Ray worker node for tests/test_batch_ray.py, started inside `unshare -m` with one folder
covered by an empty tmpfs: a node that does not share that folder, as a node on another machine
would not. Built the way ray.cluster_utils.Cluster.add_node builds its nodes (loopback only);
it runs until SIGTERM, then stops its processes.

    unshare -m sh -c 'mount -t tmpfs none FOLDER && exec python ray_hidden_node.py GCS_ADDRESS'
"""

import os
import signal
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep 127.0.0.1, as the test's own nodes do

import ray._private.node  # noqa: E402
import ray._private.parameter  # noqa: E402


def main() -> None:
    params = ray._private.parameter.RayParams(
        node_ip_address="127.0.0.1", gcs_address=sys.argv[1], num_cpus=1, num_gpus=0,
        object_store_memory=150 * 1024 * 1024, min_worker_port=0, max_worker_port=0, include_log_monitor=False,
        node_manager_port=0)
    params.dashboard_agent_listen_port = None
    node = ray._private.node.Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("joined", flush=True)
    while not stop:
        signal.pause()
    node.kill_all_processes(check_alive=False, allow_graceful=True)


if __name__ == "__main__":
    main()
