"""The predict-only HTTP API: POST /predict, GET /healthz, GET /readyz — and the page for people.

`create_app` builds the app from settings, a model loader and the per-image function (by default
`model.segment.segment`; tests pass their own to synchronise on events): the loader runs in a background
thread at start-up, the routes read `edge.EdgeState`. The page (`page`) is on unless VREYESAM_PAGE=0. No
interactive docs or OpenAPI route unless VREYESAM_ENABLE_DOCS is set (development), no other static files,
no route that can return model bytes or list files. Every error is JSON `{"error": {"code", "message"}}`
(see `errors`); internal details go to the log, never to the caller.

API keys and readiness, what the routes read of the process, are `edge`'s.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from vreyesam.runtime.http import page, routes
from vreyesam.runtime.http.admission import Overloaded
from vreyesam.runtime.http.body_limit import BodyBudget, BodyLimitMiddleware
from vreyesam.runtime.http.edge import EdgeState, SegmentFunction, exchange_of
from vreyesam.runtime.http.errors import ApiError, error_answer, json_error_body
from vreyesam.runtime.http.logs import AccessLogMiddleware
from vreyesam.runtime.media.decode import ImageInputError
from vreyesam.runtime.model.artifacts import ModelLoadError
from vreyesam.runtime.model.procedure import InvalidRequest, PromptOutsideImage
from vreyesam.runtime.model.segment import segment
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import Settings
from vreyesam.runtime.telemetry.metrics import NoRecorder, Recorder, process_recorder
from vreyesam.runtime.telemetry.tracing import process_tracing

log = logging.getLogger("vreyesam.server")

SegmenterLoader = Callable[[], Segmenter]
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


# ---------------------------------------------------------------- the app


async def _answer_error(request: Request, exc: Exception) -> Response:
    answer = error_answer(exc)
    exchange_of(request).outcome = answer.outcome  # for the access log line and the metrics
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
