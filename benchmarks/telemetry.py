"""What metrics and traces cost a request: the same requests to a server without them, with metrics, and with
metrics and traces (to an OTLP/HTTP receiver here), in one run, p50 of each; and the recording code alone.

    python -m benchmarks.telemetry --model DIR [--requests 30] [--points 1] [--json OUT]

A prediction takes seconds on a small CPU and milliseconds on a GPU, so the end-to-end figures say whether
the cost shows beside a prediction at all; the recording alone (one request's metrics: the request, its
stages and the admission gauges; one request's spans: the request and eight stages) says what it is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from tests.server_harness import free_port, ready_server, smoke_png
from vreyesam.runtime.telemetry.metrics import PrometheusRecorder
from vreyesam.runtime.telemetry.tracing import Tracing
from vreyesam.runtime.vocabulary import STAGES


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def end_to_end(model: Path, requests: int, points: int, workdir: Path) -> dict[str, float]:
    """p50 ms of the same requests against a server in each of the three configurations."""
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    Thread(target=sink.serve_forever, daemon=True).start()
    configurations = {
        "none": {"VREYESAM_METRICS_PORT": "0"},
        "metrics": {"VREYESAM_METRICS_PORT": str(free_port())},
        "metrics_and_traces": {
            "VREYESAM_METRICS_PORT": str(free_port()),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        },
    }
    body = smoke_png()
    figures = {}
    for name, env in configurations.items():
        with ready_server(model, workdir / f"{name}.log", "--allow-random-weights", env=env) as server:
            url = f"{server.base_url}/predict"
            timings = []
            with httpx.Client(timeout=300) as client:
                for index in range(requests + 2):  # two warm-ups
                    started = time.perf_counter()
                    answer = client.post(
                        url, params={"points": points}, content=body, headers={"content-type": "image/png"}
                    )
                    answer.raise_for_status()
                    if index >= 2:
                        timings.append((time.perf_counter() - started) * 1000.0)
        figures[f"{name}_p50_ms"] = round(statistics.median(timings), 2)
    sink.shutdown()
    sink.server_close()
    return figures


def recording_alone(repeats: int = 20000) -> dict[str, float]:
    """Microseconds to record one request's metrics, and to make one request's spans (exported in memory)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    recorder = PrometheusRecorder(CollectorRegistry())
    stages = {stage: 0.01 for stage in ("queue", *STAGES)}
    started = time.perf_counter()
    for _ in range(repeats):
        recorder.admission(1, 0)
        recorder.request("predict", 200, "ok", 0.05, 20000)
        recorder.stages(stages)
        recorder.admission(0, 0)
    metrics_us = (time.perf_counter() - started) / repeats * 1e6
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider.get_tracer("benchmark"))
    timeline = [(stage, 1.0) for stage in ("queue", *STAGES)]
    spans_repeats = repeats // 10
    caller = [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    started = time.perf_counter()
    for _ in range(spans_repeats):
        with tracing.request("POST", "/predict", caller) as span:
            tracing.stages(span, time.time_ns(), timeline)
        exporter.clear()
    traces_us = (time.perf_counter() - started) / spans_repeats * 1e6
    return {"metrics_per_request_us": round(metrics_us, 1), "spans_per_request_us": round(traces_us, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--points", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vreyesam-telemetry-") as folder:
        report: dict[str, Any] = {"requests": args.requests, "points": args.points}
        report.update(recording_alone())
        report.update(end_to_end(args.model, args.requests, args.points, Path(folder)))
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
