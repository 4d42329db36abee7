"""The one way the tests start a Ray cluster: a head and worker nodes on this machine, each its own raylet.

`ray.cluster_utils.Cluster` (Ray's own test cluster) starts real processes per node (GCS on the head, a
raylet, its workers) and can kill one node's processes without touching the others: what a machine lost
from a real cluster looks like. The nodes get the environment every node of this project's cluster needs
(`connect.node_environment`: token authentication, the proxy's body cap) and a token made for the test, so
nothing of the developer's own Ray setup is used or changed. Small object stores (the machine has 2 cores
and 24 GB, shared), fast failure detection, and always shut down, also when a test fails.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

import vreyesam.runtime.cluster  # noqa: F401  (switches on token authentication before ray is imported)
from vreyesam.runtime.cluster.connect import node_environment
from vreyesam.runtime.settings import load_settings

MiB = 1024 * 1024
OBJECT_STORE_BYTES = 100 * MiB
# One token for every cluster this process starts: Ray's core caches the token it first reads.
TOKEN = secrets.token_hex(32)
# A killed node is declared dead after about two seconds instead of the default half a minute.
FAST_FAILURE_DETECTION = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}


@dataclass
class TwoNodes:
    cluster: Cluster
    worker: ray._private.node.Node
    env: dict[str, str]  # what a driver process (a vreyesam command) needs to join: address and token

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def logs(self) -> Path:
        """The nodes' log folder (one machine: one session folder), where each worker process writes
        worker-<id>-<job>-<pid>.err with its stderr."""
        return Path(self.cluster.head_node.get_session_dir_path()) / "logs"

    def worker_logs(self) -> dict[int, str]:
        """The stderr of every Ray worker process of the cluster so far, by pid."""
        found = {}
        for path in self.logs.glob("worker-*.err"):
            found[int(path.stem.rsplit("-", 1)[1])] = path.read_text(errors="replace")
        return found

    def kill_worker(self) -> None:
        """The worker node's raylet and its processes killed at once (no graceful drain): a lost machine."""
        self.cluster.remove_node(self.worker, allow_graceful=False)

    def add_worker(self, num_cpus: int = 1) -> None:
        self.worker = self.cluster.add_node(num_cpus=num_cpus, object_store_memory=OBJECT_STORE_BYTES)
        self.cluster.wait_for_nodes()


@contextmanager
def two_node_cluster(
    temp_dir: Path, *, head_cpus: int, worker_cpus: int, max_body_bytes: int | None = None
) -> Iterator[TwoNodes]:
    """A head and a worker node keeping their files under `temp_dir`; `max_body_bytes` is the nodes'
    VREYESAM_MAX_BODY_BYTES (the proxy's cap)."""
    settings = load_settings({"VREYESAM_MAX_BODY_BYTES": str(max_body_bytes)} if max_body_bytes else {})
    env = {**node_environment(settings), "RAY_AUTH_TOKEN": TOKEN}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # inherited by every process the nodes start
    cluster = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": head_cpus,
                "object_store_memory": OBJECT_STORE_BYTES,
                "include_dashboard": False,
                "temp_dir": str(temp_dir),
                "_system_config": FAST_FAILURE_DETECTION,
            },
        )
        worker = cluster.add_node(num_cpus=worker_cpus, object_store_memory=OBJECT_STORE_BYTES)
        cluster.wait_for_nodes()
        yield TwoNodes(cluster=cluster, worker=worker, env={**env, "RAY_ADDRESS": cluster.address})
    finally:
        if cluster is not None:
            cluster.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
