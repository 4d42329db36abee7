"""The serving process's Prometheus metrics: every figure defined here, once, under the prefix `vreyesam_`.

Names follow Prometheus' conventions (base units: seconds, bytes; `_total` for counters) and every label
has a closed set of values (routes, outcomes, stages, rejection reasons), so a caller cannot grow the
series. `Recorder` is what the HTTP edge and the model loader report to; `PrometheusRecorder` keeps the
figures in `prometheus_client` metrics, served on a port of their own (`serve_metrics`), and the Ray path
supplies its own recorder over Ray's metrics with the same names and labels.

Several server processes (`VREYESAM_WORKERS > 1`) use the library's multiprocess mode: the parent sets
`PROMETHEUS_MULTIPROC_DIR` before the workers start, each worker writes its own files, and the parent
serves the sum (`serve_metrics(multiprocess=True)`). Gauges say how to combine workers: in-flight and
queued requests add up over live workers (`livesum`), limits and readiness are per worker (`liveall`, with
a `pid` label), and the files a dead worker left are dropped when a new worker starts
(`forget_dead_workers`), so a restarted worker does not count twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

PREFIX = "vreyesam"
# The outcome of a request: a closed set (the error codes map onto it in http/errors.py).
OUTCOMES = (
    "ok",
    "invalid_input",
    "too_large",
    "undecodable",
    "unsupported",
    "unauthorized",
    "not_found",
    "overloaded",
    "queue_timeout",
    "not_ready",
    "client_closed",
    "timeout",
    "internal",
)
ROUTES = ("predict", "readyz", "healthz", "page", "other")
# Stages of one prediction as timed (model.segment.STAGES) plus the wait for an admission slot.
STAGES = ("queue", "decode", "preprocess", "encoder", "decoder", "procedure", "render")
REJECTIONS = ("queue_full", "queue_timeout", "body_budget", "body_timeout", "header_timeout")
# From 1 ms (a GPU's stage) to 2 min (a 2-core CPU's queue): every deployment's latencies fall inside.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BYTES_BUCKETS = tuple(float(1024 * 4**power) for power in range(10))  # 1 KiB ... 256 MiB
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)  # images per encoder run (at most 64)


class Recorder(Protocol):
    """What the serving code reports; implemented over prometheus_client here, over Ray's metrics there."""

    def request(self, route: str, status: int, outcome: str, seconds: float, body_bytes: int) -> None: ...

    def stages(self, seconds: Mapping[str, float]) -> None: ...

    def encoder_batch(self, images: int) -> None: ...

    def admission(self, running: int, waiting: int) -> None: ...

    def rejected(self, reason: str) -> None: ...

    def bodies_in_flight(self, count: int, total_bytes: int) -> None: ...

    def model(self, info: Mapping[str, str], ready: bool, load_seconds: float, self_test_seconds: float) -> None: ...

    def limits(self, limits: Limits) -> None: ...


@dataclass(frozen=True)
class Limits:
    """The configured limits, exported beside the figures they bound."""

    max_running: int
    max_waiting: int
    body_budget_bytes: int


def route_of(path: str) -> str:
    """The route label of a request path (the page's files are one route, anything else `other`)."""
    name = path.strip("/")
    if name in ("predict", "readyz", "healthz"):
        return name
    if path == "/" or name in ("page.js", "page.css", "sample-eye.png"):
        return "page"
    return "other"


MODEL_LABELS = ("name", "version", "sha256", "precision", "provider", "onnxruntime", "openvino")


class PrometheusRecorder:
    """The figures in `registry`: a process's own (`process_recorder`), or a test's."""

    def __init__(self, registry: CollectorRegistry) -> None:
        reg = registry
        self.requests = Counter(
            f"{PREFIX}_requests", "Requests answered, by route, status and outcome.",
            ["route", "status", "outcome"], registry=reg,
        )  # fmt: skip
        self.duration = Histogram(
            f"{PREFIX}_request_duration_seconds", "Time from the request's arrival to its answer.",
            ["route"], buckets=SECONDS_BUCKETS, registry=reg,
        )  # fmt: skip
        self.stage = Histogram(
            f"{PREFIX}_stage_duration_seconds", "Time of each stage of a prediction (queue: the wait for a slot).",
            ["stage"], buckets=SECONDS_BUCKETS, registry=reg,
        )  # fmt: skip
        self.body = Histogram(
            f"{PREFIX}_request_body_bytes", "Size of the prediction requests' bodies.",
            buckets=BYTES_BUCKETS, registry=reg,
        )  # fmt: skip
        self.batch = Histogram(
            f"{PREFIX}_encoder_batch_images", "Images in the encoder run of each prediction (1: encoded alone).",
            buckets=BATCH_BUCKETS, registry=reg,
        )  # fmt: skip
        self.running = Gauge(
            f"{PREFIX}_inflight_requests", "Predictions running now.", registry=reg, multiprocess_mode="livesum"
        )
        self.waiting = Gauge(
            f"{PREFIX}_queued_requests", "Predictions waiting for a slot now.", registry=reg,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.rejections = Counter(
            f"{PREFIX}_admission_rejections", "Requests turned away before a prediction, by reason.",
            ["reason"], registry=reg,
        )  # fmt: skip
        self.bodies = Gauge(
            f"{PREFIX}_bodies_in_flight", "Request bodies being received now.", registry=reg,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.body_bytes = Gauge(
            f"{PREFIX}_body_bytes_in_flight", "Bytes of request bodies held now (against the budget).",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.ready = Gauge(
            f"{PREFIX}_model_ready", "1 when the model is loaded and passed its self-test.", registry=reg,
            multiprocess_mode="liveall",
        )  # fmt: skip
        self.load_seconds = Gauge(
            f"{PREFIX}_model_load_seconds", "Time to build the model's sessions and self-test it.", registry=reg,
            multiprocess_mode="liveall",
        )  # fmt: skip
        self.self_test_seconds = Gauge(
            f"{PREFIX}_model_self_test_seconds", "Time of the golden self-test at start.", registry=reg,
            multiprocess_mode="liveall",
        )  # fmt: skip
        # An info metric as a gauge of 1 (the library's Info has no multiprocess mode).
        self.info = Gauge(
            f"{PREFIX}_model_info", "The model served and the engines running it (value 1).",
            MODEL_LABELS, registry=reg, multiprocess_mode="liveall",
        )  # fmt: skip
        self.limit = {
            name: Gauge(f"{PREFIX}_{name}", help_text, registry=reg, multiprocess_mode="liveall")
            for name, help_text in (
                ("max_inflight_requests", "Predictions that may run at once (a limit)."),
                ("max_queued_requests", "Predictions that may wait for a slot (a limit)."),
                ("body_budget_bytes", "Bytes of request bodies that may be held at once (a limit)."),
            )
        }
        for route in ROUTES:  # every series exists from the start: a rate() over it is never empty
            self.duration.labels(route)
        for stage in STAGES:
            self.stage.labels(stage)
        for reason in REJECTIONS:
            self.rejections.labels(reason)
        self.ready.set(0)

    def request(self, route: str, status: int, outcome: str, seconds: float, body_bytes: int) -> None:
        route = route if route in ROUTES else "other"
        self.requests.labels(route, str(status), outcome if outcome in OUTCOMES else "internal").inc()
        self.duration.labels(route).observe(seconds)
        if route == "predict" and body_bytes:
            self.body.observe(body_bytes)

    def stages(self, seconds: Mapping[str, float]) -> None:
        for stage, value in seconds.items():
            if stage in STAGES:
                self.stage.labels(stage).observe(value)

    def encoder_batch(self, images: int) -> None:
        self.batch.observe(images)

    def admission(self, running: int, waiting: int) -> None:
        self.running.set(running)
        self.waiting.set(waiting)

    def rejected(self, reason: str) -> None:
        if reason in REJECTIONS:
            self.rejections.labels(reason).inc()

    def bodies_in_flight(self, count: int, total_bytes: int) -> None:
        self.bodies.set(count)
        self.body_bytes.set(total_bytes)

    def model(self, info: Mapping[str, str], ready: bool, load_seconds: float, self_test_seconds: float) -> None:
        if ready:
            self.info.labels(*(str(info.get(label, "")) for label in MODEL_LABELS)).set(1)
        self.ready.set(1 if ready else 0)
        self.load_seconds.set(load_seconds)
        self.self_test_seconds.set(self_test_seconds)

    def limits(self, limits: Limits) -> None:
        self.limit["max_inflight_requests"].set(limits.max_running)
        self.limit["max_queued_requests"].set(limits.max_waiting)
        self.limit["body_budget_bytes"].set(limits.body_budget_bytes)


_process_recorder: PrometheusRecorder | None = None


def process_recorder() -> PrometheusRecorder:
    """This process's recorder, over the library's default registry (with its process metrics); one per
    process, since a metric name can be registered once."""
    global _process_recorder
    if _process_recorder is None:
        _process_recorder = PrometheusRecorder(DEFAULT_REGISTRY)
    return _process_recorder


class NoRecorder:
    """Metrics off (VREYESAM_METRICS_PORT=0): every report is dropped."""

    def request(self, route: str, status: int, outcome: str, seconds: float, body_bytes: int) -> None:
        pass

    def stages(self, seconds: Mapping[str, float]) -> None:
        pass

    def encoder_batch(self, images: int) -> None:
        pass

    def admission(self, running: int, waiting: int) -> None:
        pass

    def rejected(self, reason: str) -> None:
        pass

    def bodies_in_flight(self, count: int, total_bytes: int) -> None:
        pass

    def model(self, info: Mapping[str, str], ready: bool, load_seconds: float, self_test_seconds: float) -> None:
        pass

    def limits(self, limits: Limits) -> None:
        pass


def multiprocess_directory() -> str | None:
    """The multiprocess mode's folder when this process is one of several workers, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def forget_dead_workers(directory: str) -> None:
    """Drop the live-gauge files of worker processes that no longer run (the library keeps them)."""
    for path in Path(directory).iterdir():
        stem, _, pid = path.name.removesuffix(".db").rpartition("_")
        if stem.startswith("gauge_live") and pid.isdigit() and not _running(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_served: dict[tuple[str, int], threading.Thread] = {}


def serve_metrics(host: str, port: int, *, multiprocess_dir: str | None = None) -> None:
    """Serve /metrics on host:port from a thread (once per address): this process's registry, or the sum of
    the workers' files in `multiprocess_dir`. The API's port, API keys and admission never apply to it."""
    if (host, port) in _served:
        return
    registry = DEFAULT_REGISTRY
    if multiprocess_dir is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    server, thread = start_http_server(port, addr=host, registry=registry)
    _served[(host, port)] = thread
    del server
