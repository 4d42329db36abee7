"""A prediction -> the API's answer: the JSON document, or one output's PNG."""

from __future__ import annotations

import base64
from dataclasses import asdict
from typing import Any

import numpy as np

from vreyesam.runtime.http.params import PredictQuery
from vreyesam.runtime.manifest import Manifest
from vreyesam.runtime.media import render
from vreyesam.runtime.model.segmenter import Prediction
from vreyesam.runtime.vocabulary import OutputKind


def render_outputs(prediction: Prediction, image: np.ndarray, kinds: tuple[OutputKind, ...]) -> dict[str, Any]:
    """Each asked-for output as base64 PNG (the command line's bytes); the mask also as COCO RLE."""
    rendered: dict[str, Any] = {}
    for kind in kinds:
        entry: dict[str, Any] = {"png_base64": base64.b64encode(render.output_png(kind, prediction, image)).decode()}
        if kind == "mask" and prediction.binary is not None:
            entry["rle"] = render.rle_encode(prediction.binary)
        rendered[kind] = entry
    return rendered


def json_answer(
    prediction: Prediction,
    image: np.ndarray,
    manifest: Manifest,
    query: PredictQuery,
    timings_ms: dict[str, float],
    outputs: dict[str, Any],
) -> dict[str, Any]:
    seed = manifest.procedure.seed if query.seed is None else query.seed
    return {
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "model": {"name": manifest.model_name, "version": manifest.model_version, "sha256": manifest.model_sha256},
        "parameters": {
            "points": len(prediction.scores),
            "threshold": query.threshold,
            "seed": seed,
            "prompts": "explicit" if query.prompts is not None else "sampled",
        },
        "statistics": asdict(prediction.statistics),
        "timings_ms": timings_ms,
        "outputs": outputs,
    }
