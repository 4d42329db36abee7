"""The VREyeSAM inference procedure around the two networks: prompts in, ensemble and uncertainty out.

Reference (VREyeSAM's Inference.py / Test.py on SAM2ImagePredictor), per image in the fitted frame h x w:
- 30 single positive points `randint(0, min(h, w), (30, 1, 2))` as (x, y) — both below min(h, w), a
  square region, kept as the paper's default; here drawn from `numpy.random.default_rng(seed)` so the
  same request always gives the same answer;
- each prompt's first multimask output upscaled to h x w (bilinear) and thresholded at logit 0;
- probability = clip(sum_i w_i * mask_i, 0, 1) with w = scores / sum(scores) (uniform if the sum is not
  positive); binary = probability > threshold;
- uncertainty from the best-scoring prompt's 256x256 logits: u = 1 - |2 sigmoid(l) - 1|, min-max scaled;
- outputs at the input image's size: probability and uncertainty bilinear, binary nearest.
All functions are pure (no shared state), so one loaded model serves concurrent requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def sample_points(fitted_hw: tuple[int, int], count: int, seed: int) -> np.ndarray:
    """count x 1 x 2 int64 (x, y) points, each coordinate in [0, min(h, w)), from a private seeded RNG."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, min(fitted_hw), size=(count, 1, 2))


def to_model_frame(points: np.ndarray, fitted_hw: tuple[int, int], image_size: int) -> np.ndarray:
    """Nx1x2 (x, y) in the fitted frame -> float32 in the model's image_size x image_size frame."""
    height, width = fitted_hw
    scale = np.asarray([image_size / width, image_size / height], dtype=np.float32)
    return points.astype(np.float32) * scale


def upscale_logits(low_res_logits: np.ndarray, fitted_hw: tuple[int, int]) -> np.ndarray:
    """Nx256x256 float32 -> Nxhxw float32, bilinear with half-pixel centres (torch align_corners=False)."""
    height, width = fitted_hw
    return np.stack([cv2.resize(logits, (width, height), interpolation=cv2.INTER_LINEAR) for logits in low_res_logits])


def score_weights(scores: np.ndarray) -> np.ndarray:
    """Normalised ensemble weights: scores / sum(scores), uniform when the sum is not positive."""
    scores = scores.astype(np.float32)
    total = scores.sum()  # float32, as the reference sums its float32 scores
    if total > 0:
        return scores / total
    return np.full(scores.shape, 1.0 / len(scores), dtype=np.float32)


def ensemble_probability(
    low_res_logits: np.ndarray, scores: np.ndarray, fitted_hw: tuple[int, int], mask_logit_threshold: float
) -> np.ndarray:
    """Nx256x256 logits + N scores -> hxw float32 probability (score-weighted vote of the N masks).

    Each mask is upscaled and added on its own, so the N full-size maps (N x 1024 x 768 float32 is ~94 MB
    at the default 30 prompts, plus copies) never exist at once; the sum is kept in float64.
    """
    height, width = fitted_hw
    total = np.zeros((height, width), dtype=np.float64)
    for logits, weight in zip(low_res_logits, score_weights(scores), strict=True):
        mask = cv2.resize(logits, (width, height), interpolation=cv2.INTER_LINEAR) > mask_logit_threshold
        np.add(total, weight, out=total, where=mask)
    return np.clip(total, 0.0, 1.0).astype(np.float32)


def uncertainty_map(low_res_logits: np.ndarray, scores: np.ndarray, logit_clamp: float) -> np.ndarray:
    """256x256 float32 in [0, 1]: 1 - |2p - 1| of the best prompt's (clamped) logits, min-max scaled."""
    best = int(np.argmax(scores))
    logits = np.clip(low_res_logits[best].astype(np.float64), -logit_clamp, logit_clamp)
    uncertainty = 1.0 - np.abs(2.0 / (1.0 + np.exp(-logits)) - 1.0)
    spread = uncertainty.max() - uncertainty.min()
    return ((uncertainty - uncertainty.min()) / (spread + 1e-8)).astype(np.float32)


def resize_to(array: np.ndarray, size_hw: tuple[int, int], interpolation: int) -> np.ndarray:
    height, width = size_hw
    if array.shape[:2] == (height, width):
        return array
    return cv2.resize(array, (width, height), interpolation=interpolation)


@dataclass(frozen=True)
class MaskStatistics:
    coverage_percent: float
    area_px: int
    score_mean: float
    score_max: float


def mask_statistics(binary: np.ndarray, scores: np.ndarray) -> MaskStatistics:
    area = int(np.count_nonzero(binary))
    return MaskStatistics(
        coverage_percent=100.0 * area / binary.size,
        area_px=area,
        score_mean=float(scores.mean()),
        score_max=float(scores.max()),
    )
