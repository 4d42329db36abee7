"""The Ray Serve deployment: each replica serves the http room's own app over a model it verified itself.

A replica does what one `vreyesam serve` process does before its port opens (`server.preflight`: sha256 of
every artifact, random-weights policy, device, precision, API keys), then builds the same app
(`server.build_app`); Serve runs the app's lifespan, which loads the graphs and runs the golden self-test.
Ray waits for the replica's first health check before routing to it, and `check_health` waits for the
model, so a replica takes traffic only once it is ready, and one whose model failed is replaced.

Admission is the same settings as one server's, applied where Ray can route around a busy replica:
`max_ongoing_requests` = VREYESAM_MAX_CONCURRENCY per replica, `max_queued_requests` = VREYESAM_MAX_QUEUE
waiting in each proxy; beyond both, the proxy answers 503 with Retry-After (then shaped as the API's JSON
by `proxy`). A replica reserves VREYESAM_RAY_CPUS CPUs and, with VREYESAM_DEVICE=cuda, VREYESAM_RAY_GPUS GPUs
(fractions share a GPU). VREYESAM_RAY_MAX_REPLICAS above VREYESAM_RAY_REPLICAS turns on Serve's autoscaler.

`build` is the application builder for Serve config files (`serve run` / `serve deploy`, KubeRay's
serveConfigV2): settings come from the application's `runtime_env.env_vars`, as everywhere else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.config import BackpressureConfig

from vreyesam.runtime.cluster.connect import StartupRefused
from vreyesam.runtime.cluster.metrics import RayRecorder
from vreyesam.runtime.cluster.resources import actor_settings, reserved, without_secrets
from vreyesam.runtime.http.errors import RETRY_AFTER_S
from vreyesam.runtime.http.logs import configure_logging
from vreyesam.runtime.settings import Settings, load_settings

log = logging.getLogger("vreyesam.cluster")

APP_NAME = "vreyesam"
DEPLOYMENT_NAME = "VREyeSAM"
LOAD_TIMEOUT_S = 600.0  # the longest a replica may take to load and self-test its model before Ray replaces it
HEALTH_CHECK_PERIOD_S = 10.0


class ModelNotReady(RuntimeError):
    """The health check's answer for a replica without a loaded model."""


class Replica:
    def __init__(self) -> None:
        settings = actor_settings(load_settings())
        configure_logging(settings.log_level)
        from vreyesam.runtime.http import server

        try:
            files = server.preflight(settings)
        except server.StartupError as exc:
            raise StartupRefused(str(exc)) from None
        # A failed load is reported by check_health (Ray replaces the replica), not by stopping the process.
        # Its metrics go through Ray's, exported by each node (cluster/metrics.py).
        self._recorder = RayRecorder()
        self._app = server.build_app(settings, files, on_load_failure=lambda: None, recorder=self._recorder)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._app

    async def check_health(self) -> None:
        """Ready when the model is loaded and passed its self-test; the first check waits for the load."""
        self._recorder.refresh()
        model = self._app.state.edge.model
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while model.segmenter is None and not model.failed and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if model.segmenter is None:
            raise ModelNotReady("model failed to load" if model.failed else "model did not load in time")


def deployment_options(settings: Settings) -> dict[str, Any]:
    """Serve's options for the deployment, all from the settings."""
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": settings.max_concurrency,
        "max_queued_requests": settings.max_queue,
        "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=RETRY_AFTER_S),
        "ray_actor_options": reserved(settings),
        "health_check_period_s": HEALTH_CHECK_PERIOD_S,
        "graceful_shutdown_timeout_s": settings.shutdown_timeout_s,
    }
    if settings.ray_max_replicas > settings.ray_replicas:
        options["autoscaling_config"] = {
            "min_replicas": settings.ray_replicas,
            "initial_replicas": settings.ray_replicas,
            "max_replicas": settings.ray_max_replicas,
            # Scale out when replicas run their admitted share and requests start to queue.
            "target_ongoing_requests": settings.max_concurrency,
        }
    else:
        options["num_replicas"] = settings.ray_replicas
    return options


def application(settings: Settings, env_vars: dict[str, str] | None = None) -> serve.Application:
    """The bound application; `env_vars` (the settings as variables) reach every replica's environment."""
    options = deployment_options(settings)
    if env_vars:
        options["ray_actor_options"]["runtime_env"] = {"env_vars": without_secrets(env_vars)}
    ingress = serve.deployment(serve.ingress()(Replica))
    return ingress.options(**options).bind()


def build(args: dict[str, Any]) -> serve.Application:
    """Application builder for Serve config files (`import_path: vreyesam.runtime.cluster.deployment:build`)."""
    if args:
        raise ValueError("settings come from runtime_env.env_vars (VREYESAM_*), not from args")
    return application(load_settings())
