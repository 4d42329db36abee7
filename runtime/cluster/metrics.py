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

from ray.util import metrics as ray_metrics

from vreyesam.runtime.telemetry.metrics import (
    BATCH_BUCKETS,
    MODEL_LABELS,
    OUTCOMES,
    PREFIX,
    REJECTIONS,
    ROUTES,
    SECONDS_BUCKETS,
    STAGES,
    Limits,
)


class RayRecorder:
    """A `telemetry.metrics.Recorder` over `ray.util.metrics`, one per replica process."""

    def __init__(self) -> None:
        self.requests = ray_metrics.Counter(
            f"{PREFIX}_requests", "Requests answered, by route, status and outcome.", ("route", "status", "outcome")
        )
        self.duration = ray_metrics.Histogram(
            f"{PREFIX}_request_duration_seconds", "Time from the request's arrival to its answer.",
            list(SECONDS_BUCKETS), ("route",),
        )  # fmt: skip
        self.stage = ray_metrics.Histogram(
            f"{PREFIX}_stage_duration_seconds", "Time of each stage of a prediction (queue: the wait for a slot).",
            list(SECONDS_BUCKETS), ("stage",),
        )  # fmt: skip
        self.batch = ray_metrics.Histogram(
            f"{PREFIX}_encoder_batch_images", "Images in the encoder run of each prediction (1: encoded alone).",
            list(BATCH_BUCKETS),
        )  # fmt: skip
        self.running = ray_metrics.Gauge(f"{PREFIX}_inflight_requests", "Predictions running now.")
        self.waiting = ray_metrics.Gauge(f"{PREFIX}_queued_requests", "Predictions waiting for a slot now.")
        self.rejections = ray_metrics.Counter(
            f"{PREFIX}_admission_rejections", "Requests turned away before a prediction, by reason.", ("reason",)
        )
        self.body_bytes = ray_metrics.Gauge(f"{PREFIX}_body_bytes_in_flight", "Bytes of request bodies held now.")
        self.bodies = ray_metrics.Gauge(f"{PREFIX}_bodies_in_flight", "Request bodies being received now.")
        self.ready = ray_metrics.Gauge(f"{PREFIX}_model_ready", "1 when the model is loaded and passed its self-test.")
        self.load_seconds = ray_metrics.Gauge(f"{PREFIX}_model_load_seconds", "Time to load and self-test the model.")
        self.self_test_seconds = ray_metrics.Gauge(f"{PREFIX}_model_self_test_seconds", "Time of the self-test.")
        self.info = ray_metrics.Gauge(f"{PREFIX}_model_info", "The model served (value 1).", MODEL_LABELS)
        self.limit = {
            name: ray_metrics.Gauge(f"{PREFIX}_{name}", f"The {name.replace('_', ' ')} (a limit).")
            for name in ("max_inflight_requests", "max_queued_requests", "body_budget_bytes")
        }
        self._static: list[tuple[ray_metrics.Gauge, float, dict[str, str] | None]] = []
        self._set(self.ready, 0)

    def _set(self, gauge: ray_metrics.Gauge, value: float, tags: dict[str, str] | None = None) -> None:
        """Set a rarely changing gauge and remember it for `refresh`."""
        gauge.set(value, tags)
        self._static = [entry for entry in self._static if entry[0] is not gauge] + [(gauge, value, tags)]

    def refresh(self) -> None:
        """Set the rarely changing gauges again, so that Ray keeps exporting them."""
        for gauge, value, tags in self._static:
            gauge.set(value, tags)

    def request(self, route: str, status: int, outcome: str, seconds: float, body_bytes: int) -> None:
        route = route if route in ROUTES else "other"
        outcome = outcome if outcome in OUTCOMES else "internal"
        self.requests.inc(1, {"route": route, "status": str(status), "outcome": outcome})
        self.duration.observe(seconds, {"route": route})

    def stages(self, seconds: Mapping[str, float]) -> None:
        for stage, value in seconds.items():
            if stage in STAGES:
                self.stage.observe(value, {"stage": stage})

    def encoder_batch(self, images: int) -> None:
        self.batch.observe(images)

    def admission(self, running: int, waiting: int) -> None:
        self.running.set(running)
        self.waiting.set(waiting)

    def rejected(self, reason: str) -> None:
        if reason in REJECTIONS:
            self.rejections.inc(1, {"reason": reason})

    def bodies_in_flight(self, count: int, total_bytes: int) -> None:
        self.bodies.set(count)
        self.body_bytes.set(total_bytes)

    def model(self, info: Mapping[str, str], ready: bool, load_seconds: float, self_test_seconds: float) -> None:
        if ready:
            self._set(self.info, 1, {label: str(info.get(label, "")) for label in MODEL_LABELS})
        self._set(self.ready, 1 if ready else 0)
        self._set(self.load_seconds, load_seconds)
        self._set(self.self_test_seconds, self_test_seconds)

    def limits(self, limits: Limits) -> None:
        self._set(self.limit["max_inflight_requests"], limits.max_running)
        self._set(self.limit["max_queued_requests"], limits.max_waiting)
        self._set(self.limit["body_budget_bytes"], limits.body_budget_bytes)
