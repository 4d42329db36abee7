"""The predict-only HTTP API: POST /predict, GET /healthz, GET /readyz — and the page for people.

`create_app` builds the app from settings, a model loader and the per-image function (by default
`model.segment.segment`; tests pass their own to synchronise on events): the loader runs in a background
thread at start-up, the routes read `EdgeState`. The page (`page`) is on unless VREYESAM_PAGE=0. No
interactive docs or OpenAPI route unless VREYESAM_ENABLE_DOCS is set (development), no other static files,
no route that can return model bytes or list files. Every error is JSON `{"error": {"code", "message"}}`
(see `errors`); internal details go to the log, never to the caller.

API keys (optional, VREYESAM_API_KEYS_FILE) guard /predict only: health routes stay open (orchestrators
probe them without credentials and they reveal nothing). A key is sent as `Authorization: Bearer KEY` or
`X-API-Key: KEY`; a missing or wrong key gets 401 with no detail. Keys are compared as sha256 digests with
`hmac.compare_digest` against every configured key, so neither the comparison nor the loop leaks which key
or how much of it matched.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from vreyesam.runtime.http import page, routes
from vreyesam.runtime.http.admission import Admission, Overloaded
from vreyesam.runtime.http.body_limit import BodyBudget, BodyLimitMiddleware
from vreyesam.runtime.http.errors import ApiError, error_answer, json_error_body
from vreyesam.runtime.http.logs import AccessLogMiddleware
from vreyesam.runtime.media.decode import ImageInputError
from vreyesam.runtime.model.artifacts import ModelLoadError
from vreyesam.runtime.model.procedure import InvalidRequest, PromptOutsideImage
from vreyesam.runtime.model.segment import Segmentation, SegmentRequest, segment
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import DecodeLimits, Settings, read_secret_lines
from vreyesam.runtime.telemetry.metrics import Limits, NoRecorder, Recorder, process_recorder
from vreyesam.runtime.telemetry.tracing import Tracing, process_tracing

log = logging.getLogger("vreyesam.server")

SegmenterLoader = Callable[[], Segmenter]
SegmentFunction = Callable[[Segmenter, bytes, SegmentRequest, DecodeLimits], Segmentation]
# Exceptions answered by `errors.error_answer`; `Exception` last: anything else is a bare 500.
_HANDLED = (
    ApiError,
    HTTPException,
    RequestValidationError,
    ClientDisconnect,
    ImageInputError,
    PromptOutsideImage,
    InvalidRequest,
    Overloaded,
    Exception,
)


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


# ---------------------------------------------------------------- the app


async def _answer_error(request: Request, exc: Exception) -> Response:
    answer = error_answer(exc)
    request.state.outcome = answer.outcome  # for the access log line and the metrics
    return Response(
        json_error_body(answer), status_code=answer.status, headers=dict(answer.headers), media_type="application/json"
    )


def model_info(segmenter: Segmenter) -> dict[str, str]:
    """The labels of the model info metric: the model, its variant and the engines running it."""
    import onnxruntime

    manifest = segmenter.manifest
    try:
        from openvino import __version__ as openvino_version
    except ImportError:
        openvino_version = ""
    return {
        "name": manifest.model_name,
        "version": manifest.model_version,
        "sha256": manifest.model_sha256,
        "precision": segmenter.precision,
        "provider": segmenter.engines,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version.split("-")[0],
    }


def _load_in_background(edge: EdgeState, load: SegmenterLoader, on_failure: Callable[[], None]) -> None:
    state = edge.model
    started = time.perf_counter()
    try:
        segmenter = load()
        edge.recorder.model(model_info(segmenter), True, time.perf_counter() - started, segmenter.self_test_seconds)
        state.segmenter = segmenter
        log.info("model ready on %s", segmenter.engines)
    except BaseException as exc:  # whatever ends the load, the server must stop with exit 1
        state.failed = True
        # The loader's own refusals are written to be read; anything else may name a file or hold a secret:
        # its kind only (its details at debug level, for an operator who asks for them).
        log.error("model failed to load: %s", str(exc) if isinstance(exc, ModelLoadError) else type(exc).__name__)
        log.debug("model load failure", exc_info=exc)
        on_failure()


def create_app(
    settings: Settings,
    load_segmenter: SegmenterLoader,
    on_load_failure: Callable[[], None] = lambda: None,
    segment_function: SegmentFunction = segment,
    recorder: Recorder | None = None,
) -> FastAPI:
    """The ASGI app. `load_segmenter` runs in a background thread at start-up; /readyz reports it.

    If loading fails (self-test, provider), `on_load_failure` is called: the server stops with an error.
    `recorder` receives the metrics: by default this process's Prometheus recorder, none when
    VREYESAM_METRICS_PORT is 0.
    """
    if recorder is None:
        recorder = process_recorder() if settings.metrics_port else NoRecorder()
    tracing = process_tracing(settings.traces)
    edge = EdgeState.from_settings(settings, recorder, tracing, segment_function)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = threading.Thread(
            target=_load_in_background, args=(edge, load_segmenter, on_load_failure), name="model-loader"
        )
        loader.daemon = True
        loader.start()
        yield
        # A SIGTERM while the model loads: let the loader leave the engines' native code before the
        # interpreter exits (an exit under a thread inside onnxruntime aborts the process), within the grace.
        await asyncio.to_thread(loader.join, settings.shutdown_timeout_s)

    docs = settings.enable_docs
    app = FastAPI(
        title="VREyeSAM",
        version="1",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        # The request's span and its stages come from telemetry.tracing (the access log carries their trace
        # id); FastAPI's own spans, metrics and exception logs would duplicate them or export tracebacks.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.edge = edge
    for exception in _HANDLED:
        app.add_exception_handler(exception, _answer_error)
    # Added last = outermost: the access log sees every answer, the body cap runs before any read.
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        budget=BodyBudget(settings.body_budget_bytes, recorder),
        body_timeout_s=settings.body_timeout_s,
        recorder=recorder,
    )
    app.add_middleware(AccessLogMiddleware, recorder=recorder, tracing=tracing)
    app.add_api_route("/healthz", routes.healthz, methods=["GET"])
    app.add_api_route("/readyz", routes.readyz, methods=["GET"], response_model=None)
    app.add_api_route("/predict", routes.predict, methods=["POST"], response_model=None)
    if settings.page:
        page.add_page(app)
    return app
