"""`vreyesam serve --ray`: the same HTTP API on Ray Serve, N replicas (or autoscaled), until SIGTERM.

Without an address (and no RAY_ADDRESS) it starts a private Ray cluster on this machine, with token
authentication and no dashboard, and serves on --host/--port like `vreyesam serve`.
With --ray-address it joins a cluster whose nodes were started with `connect.NODE_ENVIRONMENT`, deploys
the application there, and removes it again on SIGTERM or Ctrl-C, as `serve run` does. A deployment
meant to outlive the command is a Serve config file (deploy/ray/serve-config.yaml) for `serve deploy` or
KubeRay; both build the application with the same function (`deployment.application`).

Exit codes: 0 stopped by a signal; 1 the model, the cluster or the deployment failed; 2 a usage error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from vreyesam.runtime.cluster.resources import add_resource_flags, with_resource_flags
from vreyesam.runtime.http.logs import configure_logging
from vreyesam.runtime.settings import Settings, SettingsError
from vreyesam.runtime.tools import serve as plain

log = logging.getLogger("vreyesam.cluster")
PROG = "vreyesam serve --ray"


def configure(parser: argparse.ArgumentParser) -> None:
    plain.configure(parser)
    parser.add_argument("--replicas", type=int, help="Serve replicas (env VREYESAM_RAY_REPLICAS, default 1)")
    parser.add_argument(
        "--max-replicas", type=int, help="autoscale up to this many replicas (env VREYESAM_RAY_MAX_REPLICAS)"
    )
    add_resource_flags(parser)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def run(args: argparse.Namespace) -> int:
    if args.workers is not None:
        print(f"{PROG}: error: --workers is for one machine; use --replicas", file=sys.stderr)
        return 2
    try:
        settings = with_resource_flags(
            plain.settings_from_args(args), args, ray_replicas=args.replicas, ray_max_replicas=args.max_replicas
        )
    except SettingsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if settings.model_dir is None:
        return _fail("no model directory: pass --model DIR or set VREYESAM_MODEL_DIR")
    configure_logging(settings.log_level)
    from vreyesam.runtime.http import server

    if args.ray_address is None or Path(settings.model_dir).is_dir():
        # Where the driver sees the model (always for a private cluster), a bad one fails here, at once.
        try:
            server.preflight(settings)
        except server.StartupError as exc:
            return _fail(str(exc))
    return _serve(settings, args.ray_address, settings.environment())


def _serve(settings: Settings, address: str | None, env_vars: dict[str, str]) -> int:
    from ray import serve

    from vreyesam.runtime.cluster.connect import ClusterError, check_nodes, connected, startup_refusal
    from vreyesam.runtime.cluster.deployment import APP_NAME, application

    started = time.monotonic()
    try:
        with connected(address, settings, log_to_driver=True) as private:
            check_nodes(settings)
            serve.start(http_options={"host": settings.host, "port": settings.port}, proxy_location="EveryNode")
            try:
                serve.run(application(settings, env_vars), name=APP_NAME, route_prefix="/")
            except RuntimeError as exc:
                refusal = startup_refusal(exc)
                return _fail(f"the replicas could not start: {refusal}" if refusal else "the deployment failed")
            log.info(
                "serving on Ray",
                extra={
                    "fields": {
                        "url": f"http://{settings.host}:{settings.port}",
                        "private_cluster": private,
                        "ready_after_s": round(time.monotonic() - started, 1),
                    }
                },
            )
            try:
                _wait_for_signal()
            finally:
                if private:
                    serve.shutdown()
                else:
                    serve.delete(APP_NAME)
    except ClusterError as exc:
        return _fail(str(exc))
    return 0
