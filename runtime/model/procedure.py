"""The host's part of the VREyeSAM procedure: the prompt points, and the statistics of the answer.

Reference (VREyeSAM's Inference.py / Test.py on SAM2ImagePredictor), per image in the fitted frame h x w:
30 single positive points `randint(0, min(h, w), (30, 1, 2))` as (x, y) — both below min(h, w), a square
region, kept as the paper's default; here drawn from `numpy.random.default_rng(seed)` so the same request
always gives the same answer. The ensemble, threshold, uncertainty and resizes after the decoder run in
the procedure graph on the execution provider (export/procedure_graph.py describes each step).
All functions are pure (no shared state), so one loaded model serves concurrent requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_POINTS = 64  # prompts per image at most: the API's bound, and a GPU decodes that many in one call


class PromptOutsideImage(ValueError):
    """An explicit prompt point lies outside the image (a caller's mistake)."""


class InvalidRequest(ValueError):
    """A request parameter outside its bounds (model.segment.SegmentRequest checks them). The message names it
    and says the bound, in the same words for every caller: the API answers it with a 422, the command line
    as a usage error."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


def sample_points(fitted_hw: tuple[int, int], count: int, seed: int) -> np.ndarray:
    """count x 1 x 2 int64 (x, y) points, each coordinate in [0, min(h, w)), from a private seeded RNG."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, min(fitted_hw), size=(count, 1, 2))


def explicit_points(points_xy: np.ndarray, input_hw: tuple[int, int], fitted_hw: tuple[int, int]) -> np.ndarray:
    """Nx2 (x, y) in input pixels -> Nx1x2 in the fitted frame; PromptOutsideImage for a point off the image."""
    points = np.asarray(points_xy, dtype=np.float64)
    (in_h, in_w), (fit_h, fit_w) = input_hw, fitted_hw
    inside = np.isfinite(points).all() and (points >= 0).all() and (points[:, 0] < in_w).all()
    if not (inside and (points[:, 1] < in_h).all()):
        raise PromptOutsideImage("parameter 'prompts' holds a point outside the image")
    return (points * np.asarray([fit_w / in_w, fit_h / in_h]))[:, None, :]


def to_model_frame(points: np.ndarray, fitted_hw: tuple[int, int], image_size: int) -> np.ndarray:
    """Nx1x2 (x, y) in the fitted frame -> float32 in the model's image_size x image_size frame."""
    height, width = fitted_hw
    scale = np.asarray([image_size / width, image_size / height], dtype=np.float32)
    return points.astype(np.float32) * scale


@dataclass(frozen=True)
class MaskStatistics:
    coverage_percent: float
    area_px: int
    score_mean: float
    score_max: float


def mask_statistics(area_px: int, input_hw: tuple[int, int], scores: np.ndarray) -> MaskStatistics:
    """From the binary mask's pixel count (computed in the procedure graph) and the prompts' scores."""
    return MaskStatistics(
        coverage_percent=100.0 * area_px / (input_hw[0] * input_hw[1]),
        area_px=area_px,
        score_mean=float(scores.mean()),
        score_max=float(scores.max()),
    )
