"""Traces, opt-in: one span per request, one child span per stage of a prediction, over OTLP/HTTP.

Configured by OpenTelemetry's own environment variables and nothing else: tracing is on when the SDK is
installed (the `trace` extra) and the settings say the variables ask for it (`Settings.traces`:
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` set, unless `OTEL_SDK_DISABLED=true`
or `OTEL_TRACES_EXPORTER=none`); the SDK reads its endpoint, headers, timeouts, `OTEL_SERVICE_NAME` and
`OTEL_RESOURCE_ATTRIBUTES` itself (the service name defaults to `vreyesam`). An incoming W3C `traceparent`
makes the request's span a child of the caller's; its trace id goes to the request's access log line.

The stages run in a worker thread and are timed there (`model.segment`); their spans are made afterwards,
in the request's context, with those times, laid end to end from the segmentation's start: the small gaps
between stages (microseconds) are not spans of their own. Without tracing every call here is a no-op.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


class Tracing:
    """Spans for requests and stages, or nothing (`enabled` False)."""

    def __init__(self, tracer: Any = None) -> None:
        self._tracer = tracer

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @contextmanager
    def request(self, method: str, route: str, headers: Sequence[tuple[bytes, bytes]]) -> Iterator[Any]:
        """A server span for one request, child of the caller's `traceparent` if it sent one."""
        if self._tracer is None:
            yield None
            return
        from opentelemetry import propagate, trace

        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        context = propagate.extract(carrier)
        with self._tracer.start_as_current_span(
            f"{method} {route}", context=context, kind=trace.SpanKind.SERVER, end_on_exit=True
        ) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("http.route", route)
            yield span

    def stages(self, parent: Any, started_ns: int, stages: Sequence[tuple[str, float]]) -> None:
        """One child span of `parent` per (stage, milliseconds), end to end from `started_ns`."""
        if self._tracer is None or parent is None:
            return
        from opentelemetry import trace

        context = trace.set_span_in_context(parent)
        start = started_ns
        for name, ms in stages:
            end = start + int(ms * 1e6)
            span = self._tracer.start_span(name, context=context, start_time=start)
            span.end(end_time=end)
            start = end


def trace_id(span: Any) -> str | None:
    """The span's trace id as 32 hex digits (None without a span)."""
    if span is None:
        return None
    return format(span.get_span_context().trace_id, "032x")


def now_ns() -> int:
    return time.time_ns()


_process_tracing: Tracing | None = None


def process_tracing(wanted: bool) -> Tracing:
    """This process's tracing, set up once; a no-op when not `wanted` or when the SDK is missing (then the
    server says so once in its log)."""
    global _process_tracing
    if _process_tracing is None:
        _process_tracing = Tracing(_tracer() if wanted else None)
    return _process_tracing


def _tracer() -> Any:
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        import logging

        logging.getLogger("vreyesam.server").warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed (the `trace` extra)"
        )
        return None
    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, read by the SDK
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "vreyesam"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return trace.get_tracer("vreyesam")
