"""One image, one path: image bytes (or a decoded image) and a request -> a `Segmentation`.

    decode -> Segmenter.predict (preprocess, encoder, decoder, procedure) -> geometry -> render

`segment` is the whole per-image work of every caller: the HTTP API answers from its result, `vreyesam
predict` (locally and on a Ray cluster's actors) writes its PNGs and summary row from it, and the evaluation
scores its mask. The iris' geometry (`media.iris`) is measured on the final mask for every caller alike.
Callers only translate: a request's unset parameters are the model's defaults, resolved
once (`PredictOptions.resolve`), and the result says which values were used.

Raises only domain errors: `InvalidRequest` (a parameter out of its bounds, when the request is made),
`ImageInputError` (the bytes are not an acceptable image) and `PromptOutsideImage` (an explicit prompt off
the image).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vreyesam.runtime.manifest import Manifest
from vreyesam.runtime.media import render
from vreyesam.runtime.media.decode import DEFAULT_LIMITS, decode_image
from vreyesam.runtime.media.iris import NO_IRIS, IrisGeometry
from vreyesam.runtime.media.quality import (
    DEFAULT_GATE,
    NO_IRIS_QUALITY,
    NO_MEASURES,
    ImageMeasures,
    Quality,
    assess,
)
from vreyesam.runtime.model.procedure import MAX_POINTS, InvalidRequest, MaskStatistics
from vreyesam.runtime.model.segmenter import Parameters, PredictOptions, Segmenter
from vreyesam.runtime.settings import DecodeLimits, QualityGate
from vreyesam.runtime.vocabulary import OutputKind, map_of

MAX_SEED = 2**63 - 1  # the prompt sampler's seed: numpy's default_rng takes any non-negative integer
PROMPTS_BOUND = f"parameter 'prompts' must be 1 to {MAX_POINTS} 'x,y' pairs separated by ';'"


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


@dataclass(frozen=True)
class SegmentRequest:
    """What to segment with and what to render; None means the model's default. The bounds of every
    parameter are checked here, once for every caller (InvalidRequest)."""

    points: int | None = None
    threshold: float | None = None
    seed: int | None = None
    prompts: np.ndarray | None = None  # Nx2 (x, y) in input pixels; replaces the sampled points
    outputs: tuple[OutputKind, ...] = ("mask",)  # rendered as PNG, in this order
    mask_rle: bool = False  # the binary mask also as COCO RLE (needs "mask" or "overlay" in outputs)
    quality: QualityGate = DEFAULT_GATE  # what the iris is held to (the deployment's settings)

    def __post_init__(self) -> None:
        if self.points is not None and not _whole(self.points, 1, MAX_POINTS):
            raise InvalidRequest("points", f"parameter 'points' must be a whole number from 1 to {MAX_POINTS}")
        threshold = self.threshold
        if threshold is not None and not (isinstance(threshold, float | int) and 0.0 <= threshold <= 1.0):
            raise InvalidRequest("threshold", "parameter 'threshold' must be a number from 0 to 1")
        if self.seed is not None and not _whole(self.seed, 0, MAX_SEED):
            raise InvalidRequest("seed", "parameter 'seed' must be a whole number from 0 to 2^63 - 1")
        prompts = self.prompts
        if prompts is not None and not (
            prompts.ndim == 2 and prompts.shape[1] == 2 and 1 <= len(prompts) <= MAX_POINTS
        ):
            raise InvalidRequest("prompts", PROMPTS_BOUND)
        if prompts is not None and not all(math.isfinite(float(v)) for v in prompts.ravel()):
            raise InvalidRequest("prompts", PROMPTS_BOUND)


@dataclass(frozen=True)
class Segmentation:
    """Everything an answer, a file or a summary row is made of."""

    width: int
    height: int
    parameters: Parameters
    statistics: MaskStatistics
    timings_ms: dict[str, float]  # vocabulary.STAGES, then `total` (their sum) and `host` (outside engine runs)
    encoder_batch_images: int = 1  # images in the encoder run this image was in (1: alone)
    iris: IrisGeometry = NO_IRIS  # measured on the final mask
    measures: ImageMeasures = NO_MEASURES  # of the image inside the mask
    quality: Quality = NO_IRIS_QUALITY  # the request's gate's verdict on the two
    pngs: dict[OutputKind, bytes] = field(default_factory=dict)
    mask_rle: dict[str, Any] | None = None


def model_identity(manifest: Manifest) -> dict[str, str]:
    """The model an answer came from (name, version, sha256 of its weights)."""
    return {"name": manifest.model_name, "version": manifest.model_version, "sha256": manifest.model_sha256}


def segment(
    segmenter: Segmenter,
    source: bytes | np.ndarray,
    request: SegmentRequest | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Segmentation:
    """Segment one image: `source` is untrusted image bytes (decoded within `limits`) or an HxWx3 uint8 RGB
    array already decoded."""
    request = request or SegmentRequest()
    started = time.perf_counter()
    image = source if isinstance(source, np.ndarray) else decode_image(source, limits)
    decode_ms = (time.perf_counter() - started) * 1000.0
    # The binary mask always: the iris is measured on it.
    wanted = tuple(dict.fromkeys(("binary", *(map_of(kind) for kind in request.outputs))))
    options = PredictOptions(
        points=request.points,
        threshold=request.threshold,
        seed=request.seed,
        explicit_points=request.prompts,
        maps=wanted,  # the mask, and the maps the outputs are drawn from: no others
        keep_logits=False,
    )
    prediction = segmenter.predict(image, options)
    binary = prediction.binary
    if binary is None:
        raise RuntimeError("the segmenter left out the binary mask it was asked for")
    started = time.perf_counter()
    iris, measures, quality = assess(binary, image, request.quality)
    geometry_ms = (time.perf_counter() - started) * 1000.0
    started = time.perf_counter()
    pngs = {kind: render.output_png(kind, prediction, image) for kind in request.outputs}
    rle = render.rle_encode(binary) if request.mask_rle else None
    render_ms = (time.perf_counter() - started) * 1000.0
    stages = {"decode": decode_ms, **dict(prediction.timings.stages), "geometry": geometry_ms, "render": render_ms}
    total = sum(stages.values())
    timings = {name: round(ms, 3) for name, ms in stages.items()}
    timings.update(total=round(total, 3), host=round(total - prediction.timings.engine_ms, 3))
    height, width = prediction.input_hw
    return Segmentation(
        width=width,
        height=height,
        parameters=prediction.parameters,
        statistics=prediction.statistics,
        timings_ms=timings,
        encoder_batch_images=prediction.encoder_batch_images,
        iris=iris,
        measures=measures,
        quality=quality,
        pngs=pngs,
        mask_rle=rle,
    )
