"""Traces: a request with a `traceparent` yields a server span of that trace and one child per stage, sent by
the SDK's own OTLP/HTTP exporter to a receiver here; the access log line carries the trace id."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.server_harness import ServerProcess, ready_server, smoke_png
from vreyesam.runtime.settings import load_settings
from vreyesam.runtime.vocabulary import SERVED_STAGES

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
STAGES = list(SERVED_STAGES)


class Receiver:
    """An OTLP/HTTP trace receiver: every span it was sent, as (name, trace id, span id, parent id, start, end)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str, str, int, int]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
                found = [
                    (s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.start_time_unix_nano,
                     s.end_time_unix_nano)
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                    for s in scope.spans
                ]  # fmt: skip
                with receiver.arrived:
                    receiver.spans.extend(found)
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, names: list[str], timeout_s: float = 60.0) -> list[tuple[str, str, str, str, int, int]]:
        """The spans so far, once every name in `names` arrived (the exporter sends them in batches)."""
        with self.arrived:
            arrived = self.arrived.wait_for(lambda: set(names) <= {span[0] for span in self.spans}, timeout_s)
            assert arrived, self.spans
            return list(self.spans)


@pytest.fixture(scope="module")
def traced(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Receiver]]:
    receiver = Receiver()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    log = tmp_path_factory.mktemp("traced") / "server.log"
    with ready_server(model_dir, log, "--allow-random-weights", env=env) as server:
        yield server, receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def test_a_request_span_under_the_callers_trace_with_one_child_per_stage(
    traced: tuple[ServerProcess, Receiver],
) -> None:
    server, receiver = traced
    answer = httpx.post(
        f"{server.base_url}/predict",
        content=smoke_png(),
        headers={"content-type": "image/png", "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
        timeout=300,
    )
    assert answer.status_code == 200
    spans = receiver.wait_for(["POST /predict", *STAGES])
    (request,) = [span for span in spans if span[0] == "POST /predict"]
    assert request[1] == TRACE_ID and request[3] == CALLER_SPAN
    children = sorted((span for span in spans if span[3] == request[2]), key=lambda span: span[4])
    assert [span[0] for span in children] == STAGES
    assert all(span[1] == TRACE_ID for span in children)
    assert request[4] <= children[0][4] and children[-1][5] <= request[5]  # inside the request's span
    encoder_ms = (children[STAGES.index("encoder")][5] - children[STAGES.index("encoder")][4]) / 1e6
    assert encoder_ms == pytest.approx(answer.json()["timings_ms"]["encoder"], abs=0.01)
    lines = [json.loads(line) for line in server.log().splitlines() if '"route": "predict"' in line]
    assert lines and lines[-1]["trace_id"] == TRACE_ID


def test_traces_follow_the_opentelemetry_variables() -> None:
    assert not load_settings({}).traces
    assert load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}).traces
    assert load_settings({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}).traces
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not load_settings({**endpoint, "OTEL_SDK_DISABLED": "true"}).traces
    assert not load_settings({**endpoint, "OTEL_TRACES_EXPORTER": "none"}).traces
