"""Wiring the app to uvicorn: pre-flight checks, the app factory, the metrics port, the process lifecycle.

SIGTERM (uvicorn's handler): stop accepting, let in-flight requests finish within
VREYESAM_SHUTDOWN_TIMEOUT_S, exit 0. A model that fails its self-test stops the server with exit code 1.

Connections: uvicorn closes a connection idle between requests (keep-alive), but not one that sends part
of a request head and stalls; `HeadDeadlineProtocol` closes a connection whose request head is not complete
within VREYESAM_HEADER_TIMEOUT_S of its first byte (or of the connection), counting it in the metrics.

Metrics: /metrics on VREYESAM_METRICS_PORT (never the API's port, so neither the API key nor a public
ingress of the API applies), served from this process, or with several workers from the parent over the
library's multiprocess files (`PROMETHEUS_MULTIPROC_DIR`, a fresh folder per start).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from vreyesam.runtime.http.app import create_app
from vreyesam.runtime.http.edge import ApiKeyError, ApiKeys
from vreyesam.runtime.http.logs import configure_logging
from vreyesam.runtime.media.opencv import OpenCvLimitsError, require_limits
from vreyesam.runtime.model.artifacts import ModelFiles, ModelLoadError
from vreyesam.runtime.model.loader import load_options, segmenter_from_files, verified_files
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import Settings, SettingsError, load_settings
from vreyesam.runtime.telemetry.metrics import (
    NoRecorder,
    Recorder,
    forget_dead_workers,
    multiprocess_directory,
    process_recorder,
    serve_metrics,
)

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
        options = load_options(settings)
        files = verified_files(settings.model_dir, options)
        if settings.api_keys_file is not None:
            ApiKeys.from_file(settings.api_keys_file)
    except (OpenCvLimitsError, ModelLoadError, SettingsError, ApiKeyError) as exc:
        raise StartupError(str(exc)) from None
    if options.trust is not None:
        log.info("model directory signature verified (key %s)", options.trust.key_id)
    else:
        log.warning("no VREYESAM_MODEL_PUBLIC_KEY_FILE: the model directory's signature is not checked")
    return files


def build_app(
    settings: Settings, files: ModelFiles, on_load_failure: Callable[[], None], recorder: Recorder | None = None
) -> FastAPI:
    """The app over verified files; the loader builds its graphs from their bytes (then freed). `recorder`:
    where the metrics go (default: this process's Prometheus registry, see `create_app`)."""

    def load() -> Segmenter:
        return segmenter_from_files(files, load_options(settings))

    return create_app(settings, load, on_load_failure=on_load_failure, recorder=recorder)


def _stop_this_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def app_from_env() -> FastAPI:
    """App factory for multi-worker mode (and Ray Serve): each process reads the same environment."""
    settings = load_settings()
    configure_logging(settings.log_level)
    directory = multiprocess_directory()
    if directory is not None:
        forget_dead_workers(directory)  # a worker that replaces a dead one must not count twice
    try:
        files = preflight(settings)
    except StartupError as exc:
        log.error("server cannot start: %s", exc)
        raise SystemExit(1) from None
    return build_app(settings, files, on_load_failure=_stop_this_process)


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head does not arrive in time."""

    _timeout_s: float | None = None
    _recorder: Recorder = NoRecorder()

    @classmethod
    def _configure(cls) -> None:
        # Read once per process from the environment (a worker process has no other way to get settings).
        settings = load_settings()
        cls._timeout_s = settings.header_timeout_s
        cls._recorder = process_recorder() if settings.metrics_port else NoRecorder()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if HeadDeadlineProtocol._timeout_s is None:
            HeadDeadlineProtocol._configure()
        self._head_timer: object = None
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        """Armed while a request head is awaited; disarmed once it has arrived."""
        waiting_for_head = self.conn.their_state is h11.IDLE and self.cycle is None
        if waiting_for_head and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self._timeout_s or 0.0, self._head_too_slow)
        elif not waiting_for_head:
            self._stop_watching()

    def _stop_watching(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()  # type: ignore[attr-defined]
            self._head_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer for an idle connection
        self._stop_watching()

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._recorder.rejected("header_timeout")
            self.transport.close()


def start_metrics(settings: Settings, multiprocess_dir: str | None = None) -> None:
    """/metrics on the metrics port, unless it is 0; StartupError when the port cannot be opened."""
    if not settings.metrics_port:
        return
    host = settings.metrics_host or settings.host
    try:
        serve_metrics(host, settings.metrics_port, multiprocess_dir=multiprocess_dir)
    except OSError:
        raise StartupError(f"the metrics port {settings.metrics_port} cannot be opened (is it in use?)") from None


def _uvicorn_options(settings: Settings) -> dict[str, object]:
    return {
        "http": HeadDeadlineProtocol,
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
        metrics_dir = tempfile.mkdtemp(prefix="vreyesam-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before any worker imports prometheus_client
        try:
            start_metrics(settings, metrics_dir)
            uvicorn.run(
                "vreyesam.runtime.http.server:app_from_env",
                factory=True,
                workers=settings.workers,
                **_uvicorn_options(settings),  # type: ignore[arg-type]
            )
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return 0
    server: uvicorn.Server | None = None

    def stop() -> None:
        if server is not None:
            server.should_exit = True

    app = build_app(settings, files, on_load_failure=stop)
    start_metrics(settings)
    server = uvicorn.Server(uvicorn.Config(app, **_uvicorn_options(settings)))  # type: ignore[arg-type]
    # uvicorn handles SIGTERM gracefully, then restores the previous handler and re-raises the signal,
    # which would end the process "killed by SIGTERM". With SIG_IGN as the previous handler the re-raise
    # is a no-op, so a completed graceful shutdown exits 0 as orchestrators expect.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server.run()
    return 1 if app.state.edge.model.failed else 0
