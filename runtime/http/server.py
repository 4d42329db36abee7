"""Wiring the app to uvicorn: pre-flight checks, the app factory, and the process lifecycle.

SIGTERM (uvicorn's handler): stop accepting, let in-flight requests finish within
VREYESAM_SHUTDOWN_TIMEOUT_S, exit 0. A model that fails its self-test stops the server with exit code 1.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from vreyesam.runtime.http.app import ApiKeyError, ApiKeys, create_app
from vreyesam.runtime.http.logs import configure_logging
from vreyesam.runtime.media.opencv import OpenCvLimitsError, require_limits
from vreyesam.runtime.model.artifacts import ModelFiles, ModelLoadError
from vreyesam.runtime.model.loader import load_options, segmenter_from_files, verified_files
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import Settings, SettingsError, load_settings

log = logging.getLogger("vreyesam.server")


class StartupError(Exception):
    """The server must not start; the message is safe to print (no paths, no secrets)."""


def preflight(settings: Settings) -> ModelFiles:
    """Checks before the port opens: OpenCV's image limits in effect, the model's integrity, random-weights
    policy, model key, device, precision, API keys.

    Returns the verified model files, read once: the app builds its graphs from exactly these bytes.
    """
    if settings.model_dir is None or not settings.model_dir.is_dir():
        raise StartupError("model directory not found")
    try:
        require_limits(settings.decode_limits)
        files = verified_files(settings.model_dir, load_options(settings))
        if settings.api_keys_file is not None:
            ApiKeys.from_file(settings.api_keys_file)
    except (OpenCvLimitsError, ModelLoadError, SettingsError, ApiKeyError) as exc:
        raise StartupError(str(exc)) from None
    return files


def build_app(settings: Settings, files: ModelFiles, on_load_failure: Callable[[], None]) -> FastAPI:
    """The app over verified files; the loader builds its graphs from their bytes (then freed)."""

    def load() -> Segmenter:
        return segmenter_from_files(files, load_options(settings))

    return create_app(settings, load, on_load_failure=on_load_failure)


def _stop_this_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def app_from_env() -> FastAPI:
    """App factory for multi-worker mode (and Ray Serve): each process reads the same environment."""
    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        files = preflight(settings)
    except StartupError as exc:
        log.error("server cannot start: %s", exc)
        raise SystemExit(1) from None
    return build_app(settings, files, on_load_failure=_stop_this_process)


def _uvicorn_options(settings: Settings) -> dict[str, object]:
    return {
        "host": settings.host,
        "port": settings.port,
        "server_header": False,  # no server: header naming the software and its version
        "access_log": False,  # the app logs each request itself, as structured JSON
        "log_config": None,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_s),
        "lifespan": "on",
    }


def run_server(settings: Settings, files: ModelFiles) -> int:
    """Serve until SIGTERM: exit code 0, or 1 when the model failed to load."""
    if settings.workers > 1:
        # Workers re-read settings from the environment: put command-line overrides there first.
        os.environ.update(settings.environment())
        del files  # each worker reads and verifies the model itself
        uvicorn.run(
            "vreyesam.runtime.http.server:app_from_env",
            factory=True,
            workers=settings.workers,
            **_uvicorn_options(settings),  # type: ignore[arg-type]
        )
        return 0
    server: uvicorn.Server | None = None

    def stop() -> None:
        if server is not None:
            server.should_exit = True

    app = build_app(settings, files, on_load_failure=stop)
    server = uvicorn.Server(uvicorn.Config(app, **_uvicorn_options(settings)))  # type: ignore[arg-type]
    # uvicorn handles SIGTERM gracefully, then restores the previous handler and re-raises the signal,
    # which would end the process "killed by SIGTERM". With SIG_IGN as the previous handler the re-raise
    # is a no-op, so a completed graceful shutdown exits 0 as orchestrators expect.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server.run()
    return 1 if app.state.edge.model.failed else 0
