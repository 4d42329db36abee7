"""The numpy procedure the procedure graph replaced: the reference the graph is held to (tests only).

The same steps as runtime/model/procedure.py once ran on the host, with cv2 and float64 sums: each prompt's
first multimask logits upscaled to the fitted size (bilinear) and thresholded at 0; probability = clip(sum
w_i mask_i, 0, 1) with w = scores / sum(scores) (uniform if the sum is not positive); uncertainty from the
best prompt's logits, min-max scaled; outputs at the input size (probability and uncertainty bilinear,
binary nearest).
"""

from __future__ import annotations

import cv2
import numpy as np


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


def maps(
    low_res_logits: np.ndarray,
    scores: np.ndarray,
    fitted_hw: tuple[int, int],
    input_hw: tuple[int, int],
    threshold: float,
) -> dict[str, np.ndarray]:
    """binary, probability and uncertainty at the input size, as the numpy procedure computed them."""
    probability = ensemble_probability(low_res_logits, scores, fitted_hw, 0.0)
    binary = resize_to((probability > threshold).astype(np.uint8), input_hw, cv2.INTER_NEAREST).astype(bool)
    return {
        "binary": binary,
        "probability": resize_to(probability, input_hw, cv2.INTER_LINEAR),
        "uncertainty": resize_to(uncertainty_map(low_res_logits, scores, 32.0), input_hw, cv2.INTER_LINEAR),
    }
