"""What the routes read: the process's state (the model, the admission, API keys) and each request's record.

`EdgeState` is built once per app from the settings; `ModelState` is filled in once by the loader thread.
API keys (optional, VREYESAM_API_KEYS_FILE) guard /predict only: health routes stay open (orchestrators
probe them without credentials and they reveal nothing). A key is sent as `Authorization: Bearer KEY` or
`X-API-Key: KEY`; a missing or wrong key gets 401 with no detail. Keys are compared as sha256 digests with
`hmac.compare_digest` against every configured key, so neither the comparison nor the loop leaks which key
or how much of it matched.

`Exchange` is one request as the edge records it: made by the access log when the request arrives, filled in
by the route (its timings) or the error handler (its outcome), read once by the access log line and the
metrics when the answer has gone.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request

from vreyesam.runtime.http.admission import Admission
from vreyesam.runtime.http.errors import ApiError
from vreyesam.runtime.model.segment import Segmentation, SegmentRequest, segment
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import DecodeLimits, Settings, read_secret_lines
from vreyesam.runtime.telemetry.metrics import Limits, Recorder
from vreyesam.runtime.telemetry.tracing import Tracing

SegmentFunction = Callable[[Segmenter, bytes, SegmentRequest, DecodeLimits], Segmentation]


# ---------------------------------------------------------------- API keys


class ApiKeyError(Exception):
    """The key file is unusable; the message names no path and no key."""


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ApiKeyError("the API key file holds no key")
        if any(len(key) < 16 for key in keys):
            raise ApiKeyError("API keys must be at least 16 characters long")
        self._digests = [_digest(key) for key in keys]

    @classmethod
    def from_file(cls, path: Path) -> ApiKeys:
        try:
            return cls(read_secret_lines(path))
        except OSError:
            raise ApiKeyError("the API key file cannot be read") from None

    def allows(self, presented: str | None) -> bool:
        candidate = _digest(presented or "")
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched and presented is not None


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


# ---------------------------------------------------------------- what the routes read


@dataclass
class ModelState:
    """Filled in once by the loader thread; read by the routes."""

    segmenter: Segmenter | None = None
    failed: bool = False

    def ready(self) -> Segmenter:
        """The model for /predict, or ApiError 503 (retry) while there is none."""
        if self.segmenter is None:
            raise ApiError(503, "model_not_ready", "model is not ready", {"Retry-After": "5"})
        return self.segmenter

    def loaded(self) -> Segmenter:
        """The model for /readyz, or ApiError 503 saying whether it is loading or failed."""
        if self.segmenter is None:
            if self.failed:
                raise ApiError(503, "model_failed", "model is not loaded")
            raise ApiError(503, "model_loading", "model is loading")
        return self.segmenter


@dataclass(frozen=True)
class EdgeState:
    settings: Settings
    admission: Admission
    api_keys: ApiKeys | None
    recorder: Recorder
    tracing: Tracing
    segment: SegmentFunction = segment
    model: ModelState = field(default_factory=ModelState)

    @classmethod
    def from_settings(
        cls, settings: Settings, recorder: Recorder, tracing: Tracing, segment_function: SegmentFunction = segment
    ) -> EdgeState:
        admission = Admission(
            max_running=settings.max_concurrency,
            max_waiting=settings.max_queue,
            timeout_s=settings.queue_timeout_s,
            recorder=recorder,
        )
        api_keys = ApiKeys.from_file(settings.api_keys_file) if settings.api_keys_file is not None else None
        recorder.limits(Limits(settings.max_concurrency, settings.max_queue, settings.body_budget_bytes))
        return cls(settings, admission, api_keys, recorder, tracing, segment_function)

    def check_api_key(self, request: Request) -> None:
        """ApiError 401 unless keys are off or the request presents one of them."""
        if self.api_keys is None:
            return
        key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if not self.api_keys.allows(key):
            raise ApiError(401, "unauthorized", "unauthorized", {"WWW-Authenticate": "Bearer"})


def edge_of(request: Request) -> EdgeState:
    return request.app.state.edge  # type: ignore[no-any-return]


# ---------------------------------------------------------------- one request


@dataclass
class Exchange:
    """One request, recorded by the edge as it goes (one object, typed, instead of loose request.state keys)."""

    request_id: str
    route: str  # its route's name, as the metrics label it (telemetry.metrics.route_of)
    span: Any = None  # its trace span, when traces are on
    outcome: str | None = None  # set by the error handler: why it failed (else from the status)
    timings_ms: dict[str, float] | None = None  # set by /predict: the stages of its prediction
    encoder_batch_images: int = 1  # set by /predict: images in the encoder run it was in


EXCHANGE_KEY = "exchange"  # its place in the ASGI scope's state


def exchange_of(request: Request) -> Exchange:
    """The request's record (the access log made it; an app run without that middleware gets a fresh one)."""
    state = request.scope.setdefault("state", {})
    exchange = state.get(EXCHANGE_KEY)
    if not isinstance(exchange, Exchange):
        exchange = state[EXCHANGE_KEY] = Exchange(request_id="", route="other")
    return exchange
