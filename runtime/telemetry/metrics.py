"""The serving process's Prometheus metrics: every figure defined here, once, under the prefix `vreyesam_`.

Names follow Prometheus' conventions (base units: seconds, bytes; `_total` for counters) and every label
has a closed set of values (routes, outcomes, stages, rejection reasons), so a caller cannot grow the
series. Every metric is declared once, in `METRICS` (name, kind, help, labels, buckets); `Recorder` is what
the HTTP edge and the model loader report to, written once over the table, and a metrics library is plugged
in below it as `Instruments`: prometheus_client here (`PrometheusRecorder`, served on a port of its own by
`serve_metrics`), Ray's metrics on the Ray path (cluster/metrics.py). A new metric is a table row and the
recorder method that reports it.

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
from typing import Any, Literal, Protocol

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

from vreyesam.runtime.vocabulary import SERVED_STAGES

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
STAGES = SERVED_STAGES  # the stage label's values (vocabulary: the prediction's stages and the queue)
REJECTIONS = ("queue_full", "queue_timeout", "body_budget", "body_timeout", "header_timeout")
# From 1 ms (a GPU's stage) to 2 min (a 2-core CPU's queue): every deployment's latencies fall inside.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BYTES_BUCKETS = tuple(float(1024 * 4**power) for power in range(10))  # 1 KiB ... 256 MiB
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)  # images per encoder run (at most 64)


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
Kind = Literal["counter", "histogram", "gauge"]


@dataclass(frozen=True)
class Metric:
    """One figure, declared once: every recorder builds its instruments from this table."""

    name: str  # without the prefix
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # a histogram's
    # A gauge over several worker processes: `livesum` adds the live workers' values, `liveall` keeps one
    # series per worker (a `pid` label).
    combine: Literal["livesum", "liveall"] = "liveall"
    steady: bool = False  # set once or rarely (readiness, the model, the limits)


def _table(*metrics: Metric) -> dict[str, Metric]:
    return {metric.name: metric for metric in metrics}


METRICS = _table(
    Metric("requests", "counter", "Requests answered, by route, status and outcome.", ("route", "status", "outcome")),
    Metric(
        "request_duration_seconds",
        "histogram",
        "Time from a request's arrival to its answer.",
        ("route",),
        SECONDS_BUCKETS,
    ),
    Metric(
        "stage_duration_seconds",
        "histogram",
        "Time of each stage of a prediction (queue: the wait for a slot).",
        ("stage",),
        SECONDS_BUCKETS,
    ),
    Metric("request_body_bytes", "histogram", "Size of the prediction requests' bodies.", buckets=BYTES_BUCKETS),
    Metric(
        "encoder_batch_images",
        "histogram",
        "Images in the encoder run of each prediction (1: encoded alone).",
        buckets=BATCH_BUCKETS,
    ),
    Metric("inflight_requests", "gauge", "Predictions running now.", combine="livesum"),
    Metric("queued_requests", "gauge", "Predictions waiting for a slot now.", combine="livesum"),
    Metric("admission_rejections", "counter", "Requests turned away before a prediction, by reason.", ("reason",)),
    Metric("bodies_in_flight", "gauge", "Request bodies being received now.", combine="livesum"),
    Metric(
        "body_bytes_in_flight", "gauge", "Bytes of request bodies held now (against the budget).", combine="livesum"
    ),
    Metric("model_ready", "gauge", "1 when the model is loaded and passed its self-test.", steady=True),
    Metric("model_load_seconds", "gauge", "Time to build the model's sessions and self-test it.", steady=True),
    Metric("model_self_test_seconds", "gauge", "Time of the golden self-test at start.", steady=True),
    Metric("model_info", "gauge", "The model served and the engines running it (value 1).", MODEL_LABELS, steady=True),
    Metric("max_inflight_requests", "gauge", "Predictions that may run at once (a limit).", steady=True),
    Metric("max_queued_requests", "gauge", "Predictions that may wait for a slot (a limit).", steady=True),
    Metric("body_budget_bytes", "gauge", "Bytes of request bodies that may be held at once (a limit).", steady=True),
)
# Every series with a closed label set exists from the start: a rate() over it is never empty.
PRESET_SERIES = {
    "request_duration_seconds": [{"route": route} for route in ROUTES],
    "stage_duration_seconds": [{"stage": stage} for stage in STAGES],
    "admission_rejections": [{"reason": reason} for reason in REJECTIONS],
}


class Instruments(Protocol):
    """A metrics library, by the table: prometheus_client here, Ray's metrics on Ray Serve (cluster/metrics)."""

    def add(self, metric: Metric, labels: Mapping[str, str], value: float) -> None: ...

    def observe(self, metric: Metric, labels: Mapping[str, str], value: float) -> None: ...

    def set(self, metric: Metric, labels: Mapping[str, str], value: float) -> None: ...


class Recorder:
    """What the serving code reports, written once into the table's metrics over any `Instruments`."""

    def __init__(self, instruments: Instruments) -> None:
        self._instruments = instruments
        self._instruments.set(METRICS["model_ready"], {}, 0)

    def request(self, route: str, status: int, outcome: str, seconds: float, body_bytes: int) -> None:
        route = route if route in ROUTES else "other"
        outcome = outcome if outcome in OUTCOMES else "internal"
        self._instruments.add(METRICS["requests"], {"route": route, "status": str(status), "outcome": outcome}, 1)
        self._instruments.observe(METRICS["request_duration_seconds"], {"route": route}, seconds)
        if route == "predict" and body_bytes:
            self._instruments.observe(METRICS["request_body_bytes"], {}, body_bytes)

    def stages(self, seconds: Mapping[str, float]) -> None:
        for stage, value in seconds.items():
            if stage in STAGES:
                self._instruments.observe(METRICS["stage_duration_seconds"], {"stage": stage}, value)

    def encoder_batch(self, images: int) -> None:
        self._instruments.observe(METRICS["encoder_batch_images"], {}, images)

    def admission(self, running: int, waiting: int) -> None:
        self._instruments.set(METRICS["inflight_requests"], {}, running)
        self._instruments.set(METRICS["queued_requests"], {}, waiting)

    def rejected(self, reason: str) -> None:
        if reason in REJECTIONS:
            self._instruments.add(METRICS["admission_rejections"], {"reason": reason}, 1)

    def bodies_in_flight(self, count: int, total_bytes: int) -> None:
        self._instruments.set(METRICS["bodies_in_flight"], {}, count)
        self._instruments.set(METRICS["body_bytes_in_flight"], {}, total_bytes)

    def model(self, info: Mapping[str, str], ready: bool, load_seconds: float, self_test_seconds: float) -> None:
        if ready:
            self._instruments.set(METRICS["model_info"], {label: str(info.get(label, "")) for label in MODEL_LABELS}, 1)
        self._instruments.set(METRICS["model_ready"], {}, 1 if ready else 0)
        self._instruments.set(METRICS["model_load_seconds"], {}, load_seconds)
        self._instruments.set(METRICS["model_self_test_seconds"], {}, self_test_seconds)

    def limits(self, limits: Limits) -> None:
        self._instruments.set(METRICS["max_inflight_requests"], {}, limits.max_running)
        self._instruments.set(METRICS["max_queued_requests"], {}, limits.max_waiting)
        self._instruments.set(METRICS["body_budget_bytes"], {}, limits.body_budget_bytes)


class _Dropped:
    def add(self, metric: Metric, labels: Mapping[str, str], value: float) -> None:
        pass

    def observe(self, metric: Metric, labels: Mapping[str, str], value: float) -> None:
        pass

    def set(self, metric: Metric, labels: Mapping[str, str], value: float) -> None:
        pass


class NoRecorder(Recorder):
    """Metrics off (VREYESAM_METRICS_PORT=0): every report is dropped."""

    def __init__(self) -> None:
        super().__init__(_Dropped())


class _PrometheusInstruments:
    """The table as prometheus_client metrics in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._metrics: dict[str, Any] = {}
        for metric in METRICS.values():
            name, labels = f"{PREFIX}_{metric.name}", list(metric.labels)
            if metric.kind == "counter":
                made: Any = Counter(name, metric.help, labels, registry=registry)
            elif metric.kind == "histogram":
                made = Histogram(name, metric.help, labels, buckets=metric.buckets, registry=registry)
            else:
                made = Gauge(name, metric.help, labels, registry=registry, multiprocess_mode=metric.combine)
            self._metrics[metric.name] = made
        for name, series in PRESET_SERIES.items():
            for labels in series:
                self._metrics[name].labels(**labels)

    def _series(self, metric: Metric, labels: Mapping[str, str]) -> Any:
        made = self._metrics[metric.name]
        return made.labels(**labels) if metric.labels else made

    def add(self, metric: Metric, labels: Mapping[str, str], value: float) -> None:
        self._series(metric, labels).inc(value)

    def observe(self, metric: Metric, labels: Mapping[str, str], value: float) -> None:
        self._series(metric, labels).observe(value)

    def set(self, metric: Metric, labels: Mapping[str, str], value: float) -> None:
        self._series(metric, labels).set(value)


class PrometheusRecorder(Recorder):
    """The figures in `registry`: a process's own (`process_recorder`), or a test's."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(_PrometheusInstruments(registry))


_process_recorder: PrometheusRecorder | None = None


def process_recorder() -> PrometheusRecorder:
    """This process's recorder, over the library's default registry (with its process metrics); one per
    process, since a metric name can be registered once."""
    global _process_recorder
    if _process_recorder is None:
        _process_recorder = PrometheusRecorder(DEFAULT_REGISTRY)
    return _process_recorder


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
