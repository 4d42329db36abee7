"""Structured JSON logs: one object per line, with a request id on every request line.

Every value goes through json.dumps, so control characters a caller puts in a header or a path arrive
escaped (`\\n`, `\\u001b`) and cannot start a forged log line. Request lines hold the method, the matched
route (never the raw path or query string), status, size and timings; never a body, a header value other
than a validated request id, a file path, a token or a key.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
import warnings
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vreyesam.runtime.http.edge import EXCHANGE_KEY, Exchange
from vreyesam.runtime.media.opencv import cv2
from vreyesam.runtime.telemetry.metrics import NoRecorder, Recorder, route_of
from vreyesam.runtime.telemetry.tracing import Tracing, trace_id

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

access_log = logging.getLogger("vreyesam.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            # The exception's type only: its text can hold paths or input fragments.
            entry["exception"] = record.exc_info[0].__name__ if record.exc_info[0] else "unknown"
        return json.dumps(entry, ensure_ascii=True, default=str)


def _log_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, *_: object, **__: object
) -> None:
    # Library warnings (e.g. Pillow on a malformed upload) become JSON lines naming only their category:
    # Python's own format would print a source path and text derived from the caller's data.
    logging.getLogger("vreyesam.warnings").warning("library warning", extra={"fields": {"category": category.__name__}})


def configure_logging(level: str) -> None:
    """JSON lines on stderr for everything the server process says, OpenCV's native logger silenced."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    warnings.showwarning = _log_warning
    # OpenCV prints its own decode errors (with build paths) straight to stderr; the decoder already
    # turns every failure into a 4xx, so its native log has nothing to add.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def request_id_from(scope: Scope) -> str:
    """The caller's X-Request-ID if it is a plain token, else a fresh one."""
    given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


class AccessLogMiddleware:
    """Logs one line per request, counts it in the metrics (route, status, outcome, duration, body size, the
    prediction's stages) and returns the request id in the X-Request-ID header."""

    def __init__(self, app: ASGIApp, recorder: Recorder | None = None, tracing: Tracing | None = None) -> None:
        self.app = app
        self.recorder = recorder or NoRecorder()
        self.tracing = tracing or Tracing()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        path = scope.get("path", "")
        exchange = Exchange(request_id=request_id, route=route_of(path))
        scope.setdefault("state", {})[EXCHANGE_KEY] = exchange
        started = time.perf_counter()
        status = 500
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        # A span is named by its route's template (OpenTelemetry's `http.route`), e.g. "POST /predict".
        template = path if exchange.route != "other" else "other"
        with self.tracing.request(scope.get("method", ""), template, scope.get("headers", [])) as span:
            exchange.span = span
            try:
                await self.app(scope, counting_receive, send_with_id)
            finally:
                if span is not None:
                    span.set_attribute("http.response.status_code", status)
                self._record(scope, exchange, status, received, time.perf_counter() - started)

    def _record(self, scope: Scope, exchange: Exchange, status: int, received: int, seconds: float) -> None:
        """The request's access log line and its metrics, under one route name."""
        outcome = exchange.outcome or ("ok" if status < 400 else "internal")
        timings = exchange.timings_ms
        self.recorder.request(exchange.route, status, outcome, seconds, received)
        if timings:
            self.recorder.stages({stage: ms / 1000.0 for stage, ms in timings.items()})
            self.recorder.encoder_batch(exchange.encoder_batch_images)
        span = exchange.span
        fields = {
            "request_id": exchange.request_id,
            **({"trace_id": trace_id(span)} if span is not None else {}),
            "method": scope.get("method", ""),
            "route": exchange.route,
            "status": status,
            "outcome": outcome,
            "bytes_in": received,
            "duration_ms": round(seconds * 1000.0, 3),
            **({"timings_ms": timings} if timings else {}),
        }
        access_log.info("request", extra={"fields": fields})
