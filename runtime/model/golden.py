"""The golden self-test: the model checks its own engines before it serves.

The exporter stores a small fixed input and what the PyTorch model and the reference procedure gave for
it (`golden.npz`). At start the runtime runs the same input through all four graphs actually chosen (the
preprocessing and procedure graphs too, on the same device) and refuses to become ready if any output is
non-finite or further from the stored one than the manifest's tolerance. A graph folded wrongly at load,
a broken provider kernel (a device's antialiased resize, say) or a reduced-precision variant that drifted
shows up here, not in a response.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vreyesam.runtime.gate_report import misses
from vreyesam.runtime.model import procedure
from vreyesam.runtime.model.agreement import iou, relative_error
from vreyesam.runtime.model.segmenter import Segmenter

GOLDEN_KEYS = ("image", "points", "low_res_logits", "scores", "binary")


class GoldenMismatch(Exception):
    """The model's outputs on the golden sample are non-finite or off beyond tolerance."""


@dataclass(frozen=True)
class GoldenSample:
    image: np.ndarray  # HxWx3 uint8 RGB input image (small: the model fits it to 1024 itself)
    points: np.ndarray  # Nx1x2 int, fitted frame
    low_res_logits: np.ndarray  # Nx256x256 float32 from torch
    scores: np.ndarray  # N float32 from torch
    binary: np.ndarray  # HxW bool: the reference procedure's final mask (default threshold) from torch's outputs


def save_golden(path: Path, sample: GoldenSample) -> None:
    with path.open("wb") as handle:
        np.savez_compressed(handle, **{key: getattr(sample, key) for key in GOLDEN_KEYS})


def load_golden(data: bytes) -> GoldenSample:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return GoldenSample(**{key: archive[key] for key in GOLDEN_KEYS})


def run_golden(segmenter: Segmenter, sample: GoldenSample, tolerance: dict[str, float]) -> dict[str, float]:
    """Errors of the segmenter's outputs on the golden sample; GoldenMismatch when out of tolerance."""
    prepared = segmenter.prepare(sample.image)
    features = segmenter.encode(prepared)
    model_points = procedure.to_model_frame(
        sample.points, prepared.fitted_hw, segmenter.manifest.preprocessing.image_size
    )
    decoded = segmenter.decode(features, model_points)
    logits = segmenter.decoder.to_host(decoded.logits)
    binary = segmenter.finish(prepared, decoded, segmenter.parameters().threshold, ("binary",))["binary"]
    if not (np.isfinite(logits).all() and np.isfinite(decoded.scores).all()):
        raise GoldenMismatch("golden self-test: the model produced non-finite outputs")
    errors = {
        "logits_relative_error": relative_error(logits, sample.low_res_logits),
        "scores_max_abs_error": float(np.abs(decoded.scores - sample.scores).max()),
        "final_mask_iou": iou(binary, sample.binary),
    }
    problems = misses(errors, tolerance)
    if problems:
        raise GoldenMismatch("golden self-test: " + "; ".join(problems))
    return errors
