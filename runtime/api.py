"""The predict-only HTTP API: POST /predict, GET /healthz, GET /readyz — and nothing else.

No interactive docs or OpenAPI route unless VREYESAM_ENABLE_DOCS is set (development), no static files,
no route that can return model bytes or list files. Every error is JSON `{"error": {"code", "message"}}`
with a short fixed message; internal details go to the log, never to the caller.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from vreyesam.runtime import render
from vreyesam.runtime.admission import Admission, Overloaded
from vreyesam.runtime.auth import ApiKeys, presented_key
from vreyesam.runtime.decode import ImageInputError, decode_image
from vreyesam.runtime.logs import AccessLogMiddleware
from vreyesam.runtime.middleware import BodyLimitMiddleware
from vreyesam.runtime.segmenter import Prediction, PredictOptions, Segmenter
from vreyesam.runtime.settings import Settings

log = logging.getLogger("vreyesam.server")

MAX_POINTS = 64
CLIENT_CLOSED_REQUEST = 499
OUTPUT_NAMES = ("mask", "probability", "uncertainty", "overlay")
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}
_IMAGE_STATUS = {"unsupported_format": 415, "undecodable_image": 422, "image_too_large": 413}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


@dataclass
class ModelState:
    """Filled in by the loader thread; read by the routes."""

    segmenter: Segmenter | None = None
    failed: bool = False


SegmenterLoader = Callable[[], Segmenter]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = exc.detail if exc.status_code == 413 else code.replace("_", " ")
        return error_response(exc.status_code, code, str(message), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        location = errors[0].get("loc", ()) if errors else ()
        name = str(location[-1]) if location else "request"
        return error_response(422, "invalid_parameter", f"invalid value for parameter '{name}'")

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, exc: ClientDisconnect) -> Response:
        # The caller hung up mid-upload: nobody reads this answer, and it is not a server error.
        # 499 is the common log convention for "client closed request".
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error: %s", type(exc).__name__)
        return error_response(500, "internal_error", "internal server error")


def _parse_outputs(outputs: str) -> list[str]:
    names = [name.strip() for name in outputs.split(",") if name.strip()]
    if not names or any(name not in OUTPUT_NAMES for name in names):
        raise ApiError(422, "invalid_parameter", f"parameter 'outputs' must list some of {', '.join(OUTPUT_NAMES)}")
    return list(dict.fromkeys(names))


def _parse_prompts(prompts: str | None, width: int, height: int) -> np.ndarray | None:
    """'x,y;x,y' in input pixels -> Nx2 float array, or None for the seeded sampler."""
    if prompts is None:
        return None
    try:
        pairs = [tuple(float(v) for v in item.split(",")) for item in prompts.split(";") if item.strip()]
        points = np.asarray(pairs, dtype=np.float64)
    except ValueError:
        points = np.empty((0, 3))
    if points.ndim != 2 or points.shape[1] != 2 or not 1 <= len(points) <= MAX_POINTS:
        raise ApiError(422, "invalid_parameter", "parameter 'prompts' must be 1 to 64 'x,y' pairs separated by ';'")
    inside = (points >= 0).all() and (points[:, 0] < width).all() and (points[:, 1] < height).all()
    if not np.isfinite(points).all() or not inside:
        raise ApiError(422, "invalid_parameter", "parameter 'prompts' holds a point outside the image")
    return points


async def _read_image_bytes(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=4, max_part_size=1024) as form:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise ApiError(422, "missing_image", "multipart body has no file field 'image'")
            return await upload.read()
    if content_type == "application/octet-stream" or content_type.startswith("image/"):
        return await request.body()
    raise ApiError(
        415, "unsupported_media_type", "send the image as image/*, application/octet-stream or multipart/form-data"
    )


def _render_output(name: str, prediction: Prediction, image: np.ndarray) -> bytes:
    # The API calls the binary mask "mask"; the PNG bytes are the command line's, byte for byte.
    return render.output_png("binary" if name == "mask" else name, prediction, image)


def _json_answer(
    prediction: Prediction, image: np.ndarray, outputs: list[str], segmenter: Segmenter, parameters: dict[str, Any]
) -> dict[str, Any]:
    manifest = segmenter.manifest
    rendered: dict[str, Any] = {}
    for name in outputs:
        entry: dict[str, Any] = {"png_base64": base64.b64encode(_render_output(name, prediction, image)).decode()}
        if name == "mask":
            entry["rle"] = render.rle_encode(prediction.binary)
        rendered[name] = entry
    return {
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "model": {"name": manifest.model_name, "version": manifest.model_version, "sha256": manifest.model_sha256},
        "parameters": parameters,
        "statistics": asdict(prediction.statistics),
        "timings_ms": prediction.timings_ms,
        "outputs": rendered,
    }


def create_app(
    settings: Settings, load_segmenter: SegmenterLoader, on_load_failure: Callable[[], None] = lambda: None
) -> FastAPI:
    """The ASGI app. `load_segmenter` runs in a background thread at start-up; /readyz reports it.

    If loading fails (self-test, provider), `on_load_failure` is called: the server stops with an error.
    """
    state = ModelState()
    admission = Admission(
        max_running=settings.max_concurrency, max_waiting=settings.max_queue, timeout_s=settings.queue_timeout_s
    )

    def _load() -> None:
        try:
            state.segmenter = load_segmenter()
            log.info("model ready on %s", state.segmenter.provider)
        except Exception as exc:
            state.failed = True
            log.error("model failed to load: %s", getattr(exc, "args", ["error"])[0])
            on_load_failure()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=_load, name="model-loader", daemon=True).start()
        yield

    docs = settings.enable_docs
    app = FastAPI(
        title="VREyeSAM",
        version="1",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.model = state
    _install_error_handlers(app)
    # Added last = outermost: the access log sees every answer, the body cap runs before any read.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLogMiddleware)
    api_keys = ApiKeys.from_file(settings.api_keys_file) if settings.api_keys_file is not None else None

    def require_api_key(request: Request) -> None:
        if api_keys is None:
            return
        key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if not api_keys.allows(key):
            raise ApiError(401, "unauthorized", "unauthorized", {"WWW-Authenticate": "Bearer"})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        segmenter = state.segmenter
        if segmenter is None:
            status = "failed" if state.failed else "loading"
            return error_response(503, f"model_{status}", f"model is {'not loaded' if state.failed else 'loading'}")
        manifest = segmenter.manifest
        return JSONResponse(
            {
                "status": "ready",
                "provider": segmenter.provider,
                "model": {
                    "name": manifest.model_name,
                    "version": manifest.model_version,
                    "sha256": manifest.model_sha256,
                    "precision": segmenter.precision,
                    "random_weights": manifest.source.random_weights,
                },
            }
        )

    @app.post("/predict", response_model=None)
    async def predict(
        request: Request,
        points: Annotated[int, Query(ge=1, le=MAX_POINTS, description="number of sampled prompts")] = 30,
        threshold: Annotated[float, Query(ge=0.0, le=1.0, description="probability threshold")] = 0.2,
        seed: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="prompt sampler seed")] = None,
        outputs: Annotated[
            str, Query(max_length=64, description="any of mask,probability,uncertainty,overlay")
        ] = "mask",
        prompts: Annotated[str | None, Query(max_length=2048, description="explicit prompts 'x,y;x,y'")] = None,
    ) -> Response:
        require_api_key(request)
        segmenter = state.segmenter
        if segmenter is None:
            raise ApiError(503, "model_not_ready", "model is not ready", {"Retry-After": "5"})
        names = _parse_outputs(outputs)
        wants_png = "image/png" in request.headers.get("accept", "")
        if wants_png and len(names) != 1:
            raise ApiError(406, "not_acceptable", "Accept: image/png needs exactly one output")
        started = time.perf_counter()
        data = await _read_image_bytes(request)
        try:
            async with admission.slot():
                image, prediction = await run_in_threadpool(
                    _decode_and_predict, segmenter, data, settings, points, threshold, seed, prompts
                )
                request.state.timings_ms = prediction.timings_ms  # for the access log line
                if wants_png:
                    png = await run_in_threadpool(_render_output, names[0], prediction, image)
                    return Response(png, media_type="image/png")
                used_seed = segmenter.manifest.procedure.seed if seed is None else seed
                parameters = {
                    "points": len(prediction.scores),
                    "threshold": threshold,
                    "seed": used_seed,
                    "prompts": "explicit" if prompts is not None else "sampled",
                }
                answer = await run_in_threadpool(_json_answer, prediction, image, names, segmenter, parameters)
        except Overloaded as exc:
            raise ApiError(503, "overloaded", "server is busy, retry later", {"Retry-After": "1"}) from exc
        answer["timings_ms"]["request"] = round((time.perf_counter() - started) * 1000.0, 3)
        return JSONResponse(answer)

    return app


def _decode_and_predict(
    segmenter: Segmenter,
    data: bytes,
    settings: Settings,
    points: int,
    threshold: float,
    seed: int | None,
    prompts: str | None,
) -> tuple[np.ndarray, Prediction]:
    started = time.perf_counter()
    try:
        image = decode_image(data, settings.decode_limits)
    except ImageInputError as exc:
        raise ApiError(_IMAGE_STATUS.get(exc.code, 422), exc.code, exc.message) from None
    decode_ms = round((time.perf_counter() - started) * 1000.0, 3)
    explicit = _parse_prompts(prompts, image.shape[1], image.shape[0])
    options = PredictOptions(points=points, threshold=threshold, seed=seed, explicit_points=explicit)
    prediction = segmenter.predict(image, options)
    prediction.timings_ms["decode"] = decode_ms
    return image, prediction
