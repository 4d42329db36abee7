"""How close two outputs are: the one definition of each measure the gate, the self-test and the tests use."""

from __future__ import annotations

import numpy as np

# A reference logit is "confident" when |l| >= this fraction of its mask's max |l|: near-zero logits
# flip sign under any rounding and say nothing about the mask.
CONFIDENT_FRACTION = 0.1


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected| (the scale of logits varies a lot between models)."""
    scale = float(np.abs(expected).max()) or 1.0
    return float(np.abs(actual.astype(np.float64) - expected).max()) / scale


def iou_from_counts(intersection: int, union: int) -> float:
    """Intersection over union; two empty masks agree perfectly (1.0)."""
    return 1.0 if union == 0 else intersection / union


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same shape."""
    return iou_from_counts(int(np.logical_and(a, b).sum()), int(np.logical_or(a, b).sum()))


def confident_pixel_iou(logits: np.ndarray, reference: np.ndarray, fraction: float = CONFIDENT_FRACTION) -> float:
    """IoU of the positive pixels of two NxHxW logit stacks, counted only where the reference is confident."""
    scale = np.abs(reference).reshape(len(reference), -1).max(axis=1)[:, None, None]
    confident = np.abs(reference) >= fraction * scale
    return iou((logits > 0) & confident, (reference > 0) & confident)
