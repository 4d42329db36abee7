"""The one way the tests start a Ray cluster: a head and worker nodes on this machine, each its own raylet.

`ray.cluster_utils.Cluster` (Ray's own test cluster) starts real processes per node (GCS on the head, a
raylet, its workers) and can kill one node's processes without touching the others: what a machine lost
from a real cluster looks like. The nodes get the environment every node of this project's cluster needs
(`connect.node_environment`: token authentication, the proxy's body cap) and a token made for the test, so
nothing of the developer's own Ray setup is used or changed. Small object stores (the machine has 2 cores
and 24 GB, shared), fast failure detection, and always shut down, also when a test fails.

Every file of a cluster stays in the folder the test gives it, whatever the machine has from earlier work.
Ray keeps two things apart: a node's temp folder (`temp_dir`: session folders, logs, sockets) and its
*default* folder, `ray._common.utils.get_default_ray_temp_dir()` = `get_default_system_temp_dir()` + "/ray",
where the system temp folder is `RAY_TMPDIR`, else (Linux) `TMPDIR`, else "/tmp". `Cluster.add_node` writes
the head's address to `get_ray_address_file(None)` = <default folder>/ray_current_cluster (through
`ray._private.utils.write_ray_address`, which does not make the folder) whatever `temp_dir` says, and
`Cluster.shutdown` removes it from there: without care that is /tmp/ray, and on a machine that never ran
Ray it does not exist (FileNotFoundError). So `RAY_TMPDIR` is the cluster's folder here, in this process and
in the environment its nodes and drivers inherit, the default folder is made inside it, and `temp_dir` is
the same folder. Ray's sockets (AF_UNIX, at most 107 bytes of path on Linux) would sit in
<temp_dir>/session_<date>_<time>_<microseconds>_<pid>/sockets/, 60-odd bytes below a folder that is itself
deep in the clone's build folder; they are named explicitly in <temp_dir>/s/ instead (`ScratchCluster`, for
every node, also one a test adds with `add_node`), and a path too long still is refused before the node
starts, with the limit in the message.
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
from tests.server_harness import free_port
from vreyesam.runtime.cluster.connect import node_environment
from vreyesam.runtime.settings import load_settings

MiB = 1024 * 1024
OBJECT_STORE_BYTES = 100 * MiB
# One token for every cluster this process starts: Ray's core caches the token it first reads.
TOKEN = secrets.token_hex(32)
# A killed node is declared dead after about two seconds instead of the default half a minute.
FAST_FAILURE_DETECTION = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}
# Linux's sockaddr_un.sun_path is 108 bytes with the closing NUL; Ray refuses longer paths (validate_socket_filepath).
AF_UNIX_PATH_MAX = 107
SOCKETS = "s"  # the sockets' folder inside a cluster's folder: short on purpose


def ray_environment(temp_dir: Path) -> dict[str, str]:
    """What puts Ray's default folder inside `temp_dir`: for this process and every process it starts."""
    return {"RAY_TMPDIR": str(temp_dir)}


def prepare_folder(temp_dir: Path) -> Path:
    """`temp_dir` made absolute, and Ray's default folder (<RAY_TMPDIR>/ray, where the address file goes)
    made inside it, so that nothing depends on what the machine has from earlier work."""
    temp_dir = Path(temp_dir).absolute()
    (temp_dir / "ray").mkdir(parents=True, exist_ok=True)
    return temp_dir


def node_sockets(temp_dir: Path, index: int) -> dict[str, str]:
    """The node's plasma store and raylet socket paths in <temp_dir>/s/, refused early if AF_UNIX cannot
    bind them."""
    sockets = {
        "plasma_store_socket_name": str(temp_dir / SOCKETS / f"plasma{index}"),
        "raylet_socket_name": str(temp_dir / SOCKETS / f"raylet{index}"),
    }
    for path in sockets.values():
        size = len(path.encode())
        if size > AF_UNIX_PATH_MAX:
            raise OSError(
                f"the Ray test cluster's socket path {path} is {size} bytes; AF_UNIX allows at most "
                f"{AF_UNIX_PATH_MAX} (sun_path, 108 bytes with the NUL). Clone the repository to a shorter path "
                "or give pytest a shorter --basetemp (make test-ray keeps it in build-out/scratch/ray)."
            )
    return sockets


class ScratchCluster(Cluster):
    """Ray's test cluster, every node of which has its sockets in <folder>/s/ (see `node_sockets`) and its
    metrics exported on a port of its own (`metrics_ports`, as a scrape job would find them)."""

    def __init__(self, folder: Path, **cluster_args) -> None:
        self.folder = folder
        self._nodes_added = 0
        self.metrics_ports: list[int] = []
        super().__init__(**cluster_args)

    def add_node(self, wait: bool = True, **node_args) -> ray._private.node.Node:
        sockets = node_sockets(self.folder, self._nodes_added)
        self._nodes_added += 1
        node_args.setdefault("metrics_export_port", free_port())
        self.metrics_ports.append(node_args["metrics_export_port"])
        return super().add_node(wait, **{**sockets, **node_args})


@dataclass
class TwoNodes:
    cluster: ScratchCluster
    worker: ray._private.node.Node
    env: dict[str, str]  # what a driver process (a vreyesam command) needs to join: address, token, RAY_TMPDIR

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
    """A head and a worker node keeping all their files under `temp_dir` (Ray's address file included);
    `max_body_bytes` is the nodes' VREYESAM_MAX_BODY_BYTES (the proxy's cap)."""
    temp_dir = prepare_folder(temp_dir)
    settings = load_settings({"VREYESAM_MAX_BODY_BYTES": str(max_body_bytes)} if max_body_bytes else {})
    env = {**node_environment(settings), "RAY_AUTH_TOKEN": TOKEN, **ray_environment(temp_dir)}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # inherited by every process the nodes start
    cluster = None
    try:
        cluster = ScratchCluster(
            temp_dir,
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
