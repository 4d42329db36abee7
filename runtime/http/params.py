"""What a predict request asks for: its query parameters and its image bytes, checked at the edge.

Each check raises ApiError with a message that names the parameter; whether explicit prompts lie inside
the image is the model's check (it knows the image), raised as a domain error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
from starlette.requests import Request

from vreyesam.runtime.http.errors import ApiError
from vreyesam.runtime.model.procedure import MAX_POINTS
from vreyesam.runtime.vocabulary import OUTPUT_KINDS, OutputKind

# The procedure's defaults (the reference's 30 prompts, threshold 0.2); the seed's default is the manifest's.
DEFAULT_POINTS = 30
DEFAULT_THRESHOLD = 0.2
# A multipart body holds one file field `image` and nothing else of size: no room for a form bomb.
MULTIPART_LIMITS = {"max_files": 1, "max_fields": 4, "max_part_size": 1024}


@dataclass(frozen=True)
class PredictQuery:
    points: int
    threshold: float
    seed: int | None
    outputs: tuple[OutputKind, ...]
    prompts: np.ndarray | None  # Nx2 (x, y) in input pixels, or None for the seeded sample
    wants_png: bool  # `Accept: image/png`: answer with the one output's PNG itself


def parse_outputs(text: str) -> tuple[OutputKind, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or any(name not in OUTPUT_KINDS for name in names):
        raise ApiError(422, "invalid_parameter", f"parameter 'outputs' must list some of {', '.join(OUTPUT_KINDS)}")
    return tuple(cast("OutputKind", name) for name in dict.fromkeys(names))


def parse_prompts(text: str | None) -> np.ndarray | None:
    """'x,y;x,y' -> Nx2 float array (1 to MAX_POINTS pairs), or None when not given."""
    if text is None:
        return None
    try:
        pairs = [tuple(float(v) for v in item.split(",")) for item in text.split(";") if item.strip()]
        points = np.asarray(pairs, dtype=np.float64)
    except ValueError:
        points = np.empty((0, 3))
    if points.ndim != 2 or points.shape[1] != 2 or not 1 <= len(points) <= MAX_POINTS:
        raise ApiError(
            422, "invalid_parameter", f"parameter 'prompts' must be 1 to {MAX_POINTS} 'x,y' pairs separated by ';'"
        )
    return points


def predict_query(
    request: Request, points: int, threshold: float, seed: int | None, outputs: str, prompts: str | None
) -> PredictQuery:
    names = parse_outputs(outputs)
    wants_png = "image/png" in request.headers.get("accept", "")
    if wants_png and len(names) != 1:
        raise ApiError(406, "not_acceptable", "Accept: image/png needs exactly one output")
    return PredictQuery(points, threshold, seed, names, parse_prompts(prompts), wants_png)


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
