"""The serving metrics on Ray Serve: the same figures as `telemetry.metrics`, through Ray's own metrics.

A Serve replica has no port of its own to serve /metrics on; Ray collects its application metrics on every
node and exports them there (each node's metrics export port), where the cluster's Prometheus already
scrapes Ray. The names, labels, buckets and outcomes are `telemetry.metrics`' own; Ray prefixes every name
with `ray_`, which the Ray scrape job in deploy/prometheus/scrape-config.yaml drops again, so one dashboard
reads the plain servers and the replicas alike. Ray adds labels of its own (the node, the replica's
process); the dashboard's queries sum over them. Ray drops a gauge from its export when it has not been set
for a while, so the gauges that change rarely (readiness, the model, the limits) are set again by
`refresh`, which the replica's health check calls every few seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.util import metrics as ray_metrics

from vreyesam.runtime.telemetry.metrics import METRICS, PREFIX, Metric, Recorder


class _RayInstruments:
    """The table of `telemetry.metrics` as Ray's metrics; the steady gauges' last values kept for `refresh`."""

    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}
        for metric in METRICS.values():
            name, labels = f"{PREFIX}_{metric.name}", metric.labels or None
            if metric.kind == "counter":
                made: Any = ray_metrics.Counter(name, metric.help, labels)
            elif metric.kind == "histogram":
                made = ray_metrics.Histogram(name, metric.help, list(metric.buckets), labels)
            else:
                made = ray_metrics.Gauge(name, metric.help, labels)
            self._metrics[metric.name] = made
        self._steady: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def add(self, metric: Metric, labels: Mapping[str, str], value: float) -> None:
        self._metrics[metric.name].inc(value, dict(labels) or None)

    def observe(self, metric: Metric, labels: Mapping[str, str], value: float) -> None:
        self._metrics[metric.name].observe(value, dict(labels) or None)

    def set(self, metric: Metric, labels: Mapping[str, str], value: float) -> None:
        self._metrics[metric.name].set(value, dict(labels) or None)
        if metric.steady:
            self._steady[(metric.name, tuple(sorted(labels.items())))] = value

    def refresh(self) -> None:
        for (name, labels), value in self._steady.items():
            self._metrics[name].set(value, dict(labels) or None)


class RayRecorder(Recorder):
    """The serving `Recorder` over `ray.util.metrics`, one per replica process."""

    def __init__(self) -> None:
        self._ray = _RayInstruments()
        super().__init__(self._ray)

    def refresh(self) -> None:
        """Set the rarely changing gauges again, so that Ray keeps exporting them."""
        self._ray.refresh()
