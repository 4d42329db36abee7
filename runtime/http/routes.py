"""The three routes, as plain functions over the app's state: /healthz, /readyz, /predict.

Blocking work (decoding, inference, rendering) runs in the thread pool, behind the admission slots, so
the event loop keeps answering health checks under load. The inference call raises only domain errors
(`ImageInputError`, `PromptOutsideImage`); `errors` turns them into answers.
"""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from vreyesam.runtime.http import answers
from vreyesam.runtime.http.errors import ApiError
from vreyesam.runtime.http.params import (
    DEFAULT_POINTS,
    DEFAULT_THRESHOLD,
    PredictQuery,
    predict_query,
    read_image_bytes,
)
from vreyesam.runtime.http.state import EdgeState
from vreyesam.runtime.media import render
from vreyesam.runtime.media.decode import decode_image
from vreyesam.runtime.model.procedure import MAX_POINTS
from vreyesam.runtime.model.segmenter import Prediction, PredictOptions, Segmenter
from vreyesam.runtime.settings import DecodeLimits
from vreyesam.runtime.vocabulary import map_of


def _edge(request: Request) -> EdgeState:
    return request.app.state.edge  # type: ignore[no-any-return]


def healthz() -> dict[str, str]:
    return {"status": "ok"}


def readyz(request: Request) -> JSONResponse:
    model = _edge(request).model
    segmenter = model.segmenter
    if segmenter is None:
        if model.failed:
            raise ApiError(503, "model_failed", "model is not loaded")
        raise ApiError(503, "model_loading", "model is loading")
    manifest = segmenter.manifest
    return JSONResponse(
        {
            "status": "ready",
            "provider": segmenter.engines,
            "graphs": segmenter.graph_engines,
            "model": {
                "name": manifest.model_name,
                "version": manifest.model_version,
                "sha256": manifest.model_sha256,
                "precision": segmenter.precision,
                "random_weights": manifest.source.random_weights,
                **({"refused_variants": segmenter.refused} if segmenter.refused else {}),
            },
            # What /predict does when a parameter is not given (the page shows them).
            "defaults": {"points": DEFAULT_POINTS, "threshold": DEFAULT_THRESHOLD, "seed": manifest.procedure.seed},
        }
    )


def _infer(
    segmenter: Segmenter, data: bytes, query: PredictQuery, limits: DecodeLimits
) -> tuple[np.ndarray, Prediction, float]:
    """Decode and segment: (HxWx3 RGB image, prediction, decode ms). Raises only domain errors."""
    started = time.perf_counter()
    image = decode_image(data, limits)
    decode_ms = round((time.perf_counter() - started) * 1000.0, 3)
    options = PredictOptions(
        points=query.points,
        threshold=query.threshold,
        seed=query.seed,
        explicit_points=query.prompts,
        maps=tuple(dict.fromkeys(map_of(kind) for kind in query.outputs)),  # only what the answer shows
        keep_logits=False,
    )
    return image, segmenter.predict(image, options), decode_ms


async def predict(
    request: Request,
    points: Annotated[int, Query(ge=1, le=MAX_POINTS, description="number of sampled prompts")] = DEFAULT_POINTS,
    threshold: Annotated[float, Query(ge=0.0, le=1.0, description="probability threshold")] = DEFAULT_THRESHOLD,
    seed: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="prompt sampler seed")] = None,
    outputs: Annotated[str, Query(max_length=64, description="any of mask,probability,uncertainty,overlay")] = "mask",
    prompts: Annotated[str | None, Query(max_length=2048, description="explicit prompts 'x,y;x,y'")] = None,
) -> Response:
    edge = _edge(request)
    edge.check_api_key(request)
    segmenter = edge.model.ready()
    query = predict_query(request, points, threshold, seed, outputs, prompts)
    started = time.perf_counter()
    data = await read_image_bytes(request)
    async with edge.admission.slot():
        image, prediction, decode_ms = await run_in_threadpool(
            _infer, segmenter, data, query, edge.settings.decode_limits
        )
        if query.wants_png:
            png = await run_in_threadpool(render.output_png, query.outputs[0], prediction, image)
            request.state.timings_ms = {**prediction.timings.as_dict(), "decode": decode_ms}
            return Response(png, media_type="image/png")
        rendered = await run_in_threadpool(answers.render_outputs, prediction, image, query.outputs)
    timings = {
        **prediction.timings.as_dict(),
        "decode": decode_ms,
        "request": round((time.perf_counter() - started) * 1000.0, 3),
    }
    request.state.timings_ms = timings  # for the access log line
    return JSONResponse(answers.json_answer(prediction, image, segmenter.manifest, query, timings, rendered))
