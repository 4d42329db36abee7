"""The three routes and what a predict request asks for: /healthz, /readyz, /predict.

`/predict` checks the key, the model's readiness and the parameters (each failure an `ApiError` naming the
parameter), reads the image bytes (the body limit counts them as they stream), waits for an admission slot,
then runs the one per-image function (`model.segment.segment`, or the one the app was given) in the thread
pool so the event loop keeps answering health checks. Its result is translated into the JSON answer or,
with `Accept: image/png`, one output's PNG. Unset parameters are the model's defaults, which `/readyz`
reports; domain errors (`ImageInputError`, `PromptOutsideImage`) are answered by `errors`.
"""

from __future__ import annotations

import base64
import time
from dataclasses import asdict
from typing import Annotated, Any, cast

import numpy as np
from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from vreyesam.runtime.http.edge import edge_of, exchange_of
from vreyesam.runtime.http.errors import ApiError
from vreyesam.runtime.media.quality import iris_block
from vreyesam.runtime.model.procedure import MAX_POINTS, InvalidRequest
from vreyesam.runtime.model.segment import (
    PROMPTS_BOUND,
    Segmentation,
    SegmentRequest,
    model_identity,
)
from vreyesam.runtime.telemetry.tracing import now_ns
from vreyesam.runtime.vocabulary import OUTPUT_KINDS, QUEUE_STAGE, SERVED_STAGES, OutputKind

# A multipart body holds one file field `image` and nothing else of size: no room for a form bomb.
MULTIPART_LIMITS = {"max_files": 1, "max_fields": 4, "max_part_size": 1024}


def healthz() -> dict[str, str]:
    return {"status": "ok"}


def readyz(request: Request) -> JSONResponse:
    segmenter = edge_of(request).model.loaded()
    manifest = segmenter.manifest
    defaults = manifest.procedure
    return JSONResponse(
        {
            "status": "ready",
            "provider": segmenter.engines,
            "graphs": segmenter.graph_engines,
            "cuda_graphs": segmenter.cuda_graphs,
            "model": {
                **model_identity(manifest),
                "precision": segmenter.precision,
                "random_weights": manifest.source.random_weights,
                **({"refused_variants": segmenter.refused} if segmenter.refused else {}),
            },
            # Whether the model directory's signature was checked against a configured key at start.
            "signed": edge_of(request).settings.model_public_key_file is not None,
            # What /predict does when a parameter is not given (the page shows them): the model's own.
            "defaults": {"points": defaults.points, "threshold": defaults.threshold, "seed": defaults.seed},
        }
    )


# ---------------------------------------------------------------- what a request asks for


def parse_outputs(text: str) -> tuple[OutputKind, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or any(name not in OUTPUT_KINDS for name in names):
        raise ApiError(422, "invalid_parameter", f"parameter 'outputs' must list some of {', '.join(OUTPUT_KINDS)}")
    return tuple(cast("OutputKind", name) for name in dict.fromkeys(names))


def parse_prompts(text: str | None) -> np.ndarray | None:
    """'x,y;x,y' -> Nx2 float array, or None when not given (its bounds are the request's: SegmentRequest)."""
    if text is None:
        return None
    try:
        pairs = [tuple(float(v) for v in item.split(",")) for item in text.split(";") if item.strip()]
        return np.asarray(pairs, dtype=np.float64)
    except ValueError:
        raise InvalidRequest("prompts", PROMPTS_BOUND) from None


async def read_image_bytes(request: Request) -> bytes:
    """The upload: the raw body (image/* or application/octet-stream) or the multipart field `image`."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        async with request.form(**MULTIPART_LIMITS) as form:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise ApiError(422, "missing_image", "multipart body has no file field 'image'")
            return await upload.read()
    if content_type == "application/octet-stream" or content_type.startswith("image/"):
        return await request.body()
    raise ApiError(
        415, "unsupported_media_type", "send the image as image/*, application/octet-stream or multipart/form-data"
    )


def json_answer(result: Segmentation, identity: dict[str, str], timings_ms: dict[str, float]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for kind, png in result.pngs.items():
        outputs[kind] = {"png_base64": base64.b64encode(png).decode()}
    if result.mask_rle is not None:
        outputs["mask"]["rle"] = result.mask_rle
    return {
        "image": {"width": result.width, "height": result.height},
        "model": identity,
        "parameters": asdict(result.parameters),
        "statistics": asdict(result.statistics),
        "iris": iris_block(result.iris, result.measures),
        "quality": asdict(result.quality),
        "timings_ms": timings_ms,
        "outputs": outputs,
    }


# ---------------------------------------------------------------- /predict


async def predict(
    request: Request,
    # Types here; bounds in SegmentRequest, the same for every caller (the OpenAPI document states them).
    points: Annotated[int | None, Query(description=f"sampled prompts, 1 to {MAX_POINTS}")] = None,
    threshold: Annotated[float | None, Query(description="probability threshold, 0 to 1")] = None,
    seed: Annotated[int | None, Query(description="prompt sampler seed, 0 to 2^63 - 1")] = None,
    outputs: Annotated[str, Query(max_length=64, description=f"any of {','.join(OUTPUT_KINDS)}")] = "mask",
    prompts: Annotated[str | None, Query(max_length=2048, description="explicit prompts 'x,y;x,y'")] = None,
) -> Response:
    edge = edge_of(request)
    edge.check_api_key(request)
    segmenter = edge.model.ready()
    kinds = parse_outputs(outputs)
    wants_png = "image/png" in request.headers.get("accept", "")
    if wants_png and len(kinds) != 1:
        raise ApiError(406, "not_acceptable", "Accept: image/png needs exactly one output")
    wanted = SegmentRequest(
        points=points,
        threshold=threshold,
        seed=seed,
        prompts=parse_prompts(prompts),
        outputs=kinds,
        mask_rle="mask" in kinds and not wants_png,
        quality=edge.settings.quality_gate,
    )
    started = time.perf_counter()
    data = await read_image_bytes(request)
    queued_ns = now_ns()
    async with edge.admission.slot() as waited_s:
        result = await run_in_threadpool(edge.segment, segmenter, data, wanted, edge.settings.decode_limits)
    timings = {
        QUEUE_STAGE: round(waited_s * 1000.0, 3),
        **result.timings_ms,
        "request": round((time.perf_counter() - started) * 1000.0, 3),
    }
    exchange = exchange_of(request)  # for the access log line and the metrics
    exchange.timings_ms, exchange.encoder_batch_images = timings, result.encoder_batch_images
    stages = [(stage, timings[stage]) for stage in SERVED_STAGES]
    edge.tracing.stages(exchange.span, queued_ns, stages)
    if wants_png:
        return Response(result.pngs[kinds[0]], media_type="image/png")
    return JSONResponse(json_answer(result, model_identity(segmenter.manifest), timings))
