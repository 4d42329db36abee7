"""Joining a Ray cluster, or starting a private one on this machine, with the cluster path's safe defaults.

Ray's control ports (GCS, dashboard, job API, client server) run code for whoever reaches them, so:
- token authentication is required (`RAY_AUTH_MODE=token`); Ray reads the token from `RAY_AUTH_TOKEN`,
  `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`, and makes one for a private cluster;
- a private cluster (no address given, no `RAY_ADDRESS`) runs no dashboard and serves on `--host`/`--port`
  (loopback unless told otherwise); Ray's core ports listen on every interface whatever one asks (Ray
  has no option to bind them), and the token guards them;
- the nodes of a real cluster are started by whoever runs it with `NODE_ENVIRONMENT` and the head with
  `--dashboard-host=127.0.0.1` (README "Scaling out", deploy/ray/), and `check_nodes` refuses a cluster
  whose nodes would run Ray's proxy without the body cap.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from vreyesam.runtime.settings import Settings, SettingsError, load_settings

log = logging.getLogger("vreyesam.cluster")

AUTH_VARIABLE = "RAY_AUTH_MODE"
# Ray Serve's proxy runs the middlewares this names on every node (cluster/proxy.py: the body cap). Named
# here, not imported from the proxy's module: the batch path (`predict --ray`) has no HTTP stack to import.
CALLBACK_VARIABLE = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "vreyesam.runtime.cluster.proxy:middlewares"
NAMESPACE = "vreyesam"
# What every node's `ray start` needs in its environment (the proxy and the replicas inherit it).
NODE_ENVIRONMENT = {AUTH_VARIABLE: "token", CALLBACK_VARIABLE: CALLBACK}


class ClusterError(Exception):
    """The cluster cannot be used; the message is one line, safe to print."""


class StartupRefused(RuntimeError):
    """Raised by a replica's or an actor's constructor when its model fails the checks; the message is safe."""


def startup_refusal(exc: BaseException) -> str | None:
    """The message of the StartupRefused that a Ray error (which holds the remote traceback) carries, if any."""
    found = re.search(rf"{StartupRefused.__name__}: ([^\n]+)", str(exc))
    return found.group(1) if found else None


def node_environment(settings: Settings) -> dict[str, str]:
    """The variables a node must be started with for these settings (the proxy reads its cap from them)."""
    return {**NODE_ENVIRONMENT, "VREYESAM_MAX_BODY_BYTES": str(settings.max_body_bytes)}


def _require_token_auth() -> None:
    mode = os.environ.setdefault(AUTH_VARIABLE, "token")
    if mode.lower() != "token":
        raise ClusterError(f"{AUTH_VARIABLE} must be 'token': a Ray cluster without authentication runs anyone's code")


@contextmanager
def connected(
    address: str | None, settings: Settings, *, log_to_driver: bool, logging_level: int = logging.INFO
) -> Iterator[bool]:
    """Ray, initialised for this process; yields True for a private cluster (stopped on leaving).

    `address` None means `RAY_ADDRESS` if set, else a private cluster on this machine.
    """
    _require_token_auth()
    private = address is None and not os.environ.get("RAY_ADDRESS")
    options: dict[str, object] = {
        "namespace": NAMESPACE,
        "log_to_driver": log_to_driver,
        "logging_level": logging_level,
    }
    if private:
        os.environ.update(node_environment(settings))  # inherited by the raylet, its proxies and replicas
        options.update(address="local", include_dashboard=False)
    else:
        options["address"] = address
    try:
        ray.init(**options)  # type: ignore[arg-type]
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot join the Ray cluster ({type(exc).__name__}); check the address and token") from None
    try:
        yield private
    finally:
        ray.shutdown()


@ray.remote(num_cpus=0)
def _node_gate() -> tuple[str | None, str | None]:
    # A task's process inherits its raylet's environment, as the node's Serve proxy does.
    try:
        cap = str(load_settings().max_body_bytes)  # the node's own settings, read as every process reads them
    except SettingsError:
        cap = None
    return os.environ.get(CALLBACK_VARIABLE), cap


def check_nodes(settings: Settings) -> None:
    """ClusterError unless every alive node runs Ray's proxy with this project's body cap."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    probes = [
        _node_gate.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
        for node in nodes
    ]
    try:
        found = ray.get(probes, timeout=120)
    except ray.exceptions.GetTimeoutError:
        raise ClusterError("the cluster's nodes did not answer within 120 s") from None
    for node, (callback, cap) in zip(nodes, found, strict=True):
        if callback != CALLBACK:
            raise ClusterError(
                f"node {node['NodeManagerAddress']} was started without {CALLBACK_VARIABLE}={CALLBACK}: its proxy "
                "would buffer bodies of any size; restart it with the environment of README 'Scaling out'"
            )
        if (cap or str(Settings.max_body_bytes)) != str(settings.max_body_bytes):
            log.warning("a node's proxy caps bodies at %s bytes, the replicas at %s", cap, settings.max_body_bytes)
