"""The predict-only HTTP API: POST /predict, GET /healthz, GET /readyz — and the page for people.

The page (`page`: `/` and its three files, a static client of /predict and /readyz) is on unless
VREYESAM_PAGE=0. No interactive docs or OpenAPI route unless VREYESAM_ENABLE_DOCS is set (development),
no other static files, no route that can return model bytes or list files. Every error is JSON
`{"error": {"code", "message"}}` (see `errors`); internal details go to the log, never to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from vreyesam.runtime.http import page, routes
from vreyesam.runtime.http.admission import Overloaded
from vreyesam.runtime.http.body_limit import BodyLimitMiddleware
from vreyesam.runtime.http.errors import ApiError, error_answer, json_error_body
from vreyesam.runtime.http.logs import AccessLogMiddleware
from vreyesam.runtime.http.state import EdgeState, ModelState
from vreyesam.runtime.media.decode import ImageInputError
from vreyesam.runtime.model.segmenter import PromptOutsideImage, Segmenter
from vreyesam.runtime.settings import Settings

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
    Overloaded,
    Exception,
)


async def _answer_error(_: Request, exc: Exception) -> Response:
    answer = error_answer(exc)
    return Response(
        json_error_body(answer), status_code=answer.status, headers=dict(answer.headers), media_type="application/json"
    )


def _load_in_background(state: ModelState, load: SegmenterLoader, on_failure: Callable[[], None]) -> None:
    try:
        state.segmenter = load()
        log.info("model ready on %s", state.segmenter.engines)
    except Exception as exc:
        state.failed = True
        log.error("model failed to load: %s", getattr(exc, "args", ["error"])[0])
        on_failure()


def create_app(
    settings: Settings, load_segmenter: SegmenterLoader, on_load_failure: Callable[[], None] = lambda: None
) -> FastAPI:
    """The ASGI app. `load_segmenter` runs in a background thread at start-up; /readyz reports it.

    If loading fails (self-test, provider), `on_load_failure` is called: the server stops with an error.
    """
    edge = EdgeState.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = threading.Thread(
            target=_load_in_background, args=(edge.model, load_segmenter, on_load_failure), name="model-loader"
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
    )
    app.state.edge = edge
    for exception in _HANDLED:
        app.add_exception_handler(exception, _answer_error)
    # Added last = outermost: the access log sees every answer, the body cap runs before any read.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLogMiddleware)
    app.add_api_route("/healthz", routes.healthz, methods=["GET"])
    app.add_api_route("/readyz", routes.readyz, methods=["GET"], response_model=None)
    app.add_api_route("/predict", routes.predict, methods=["POST"], response_model=None)
    if settings.page:
        page.add_page(app)
    return app
