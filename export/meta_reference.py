"""The VREyeSAM reference procedure, written from Meta's SAM2ImagePredictor and VREyeSAM's scripts.

Needs torchvision (Meta's predictor imports it), so the export command never imports this module: the
parity tests and the benchmark use it as the reference. Independent of the runtime on purpose: it reads
the file with cv2.imread, fits it as VREyeSAM's `read_image` does, calls `predictor.set_image` and
`predictor.predict` with the default multimask output, and ensembles masks[:, 0] weighted by
scores[:, 0] (Inference.py); the uncertainty map is Test.py's, from the best prompt's low-resolution
logits. Only the point sampler differs from the scripts: it is seeded (`default_rng(seed).integers`)
instead of the global `np.random.randint`, same range.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor


@dataclass(frozen=True)
class ReferenceResult:
    binary: np.ndarray  # HxW bool at the input size
    probability: np.ndarray  # HxW float32 at the input size
    uncertainty: np.ndarray  # HxW float32 at the input size
    scores: np.ndarray  # N (scores[:, 0])
    low_res_logits: np.ndarray  # Nx256x256 (logits[:, 0])


def _sync(predictor: SAM2ImagePredictor) -> None:
    if predictor.device.type == "cuda":
        torch.cuda.synchronize()


def read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))[..., ::-1]
    r = np.min([1024 / img.shape[1], 1024 / img.shape[0]])
    return cv2.resize(img, (int(img.shape[1] * r), int(img.shape[0] * r)))


def run_reference(
    predictor: SAM2ImagePredictor,
    path: Path,
    points: int = 30,
    seed: int = 0,
    threshold: float = 0.2,
    timings_ms: dict[str, float] | None = None,
) -> ReferenceResult:
    """The procedure on one image file; `timings_ms` (if given) receives set_image, predict and total."""
    timings = {} if timings_ms is None else timings_ms
    started = time.perf_counter()
    original = cv2.imread(str(path))
    out_size = (original.shape[1], original.shape[0])  # (w, h) for cv2.resize
    image = read_image(path)
    input_points = np.random.default_rng(seed).integers(0, min(image.shape[:2]), size=(points, 1, 2))
    with torch.no_grad():
        mark = time.perf_counter()
        predictor.set_image(image)
        _sync(predictor)
        timings["set_image"] = (time.perf_counter() - mark) * 1000.0
        mark = time.perf_counter()
        masks, scores, logits = predictor.predict(
            point_coords=input_points, point_labels=np.ones([input_points.shape[0], 1])
        )
        timings["predict"] = (time.perf_counter() - mark) * 1000.0
    np_masks = np.array(masks[:, 0]).astype(np.float32)
    np_scores = scores[:, 0]
    score_sum = np.sum(np_scores)
    weights = np_scores / score_sum if score_sum > 0 else np.ones_like(np_scores) / len(np_scores)
    prob_mask = np.clip(np.sum(np_masks * weights[:, None, None], axis=0), 0, 1)
    probability = cv2.resize(prob_mask, out_size, interpolation=cv2.INTER_LINEAR)
    binary = (prob_mask > threshold).astype(np.uint8) * 255
    binary = cv2.resize(binary, out_size, interpolation=cv2.INTER_NEAREST) > 0

    best_logit = logits[np.argmax(scores[:, 0]), 0]
    prob = 1 / (1 + np.exp(-best_logit))
    uncertainty = 1 - np.abs(2 * prob - 1)
    uncertainty = (uncertainty - uncertainty.min()) / (uncertainty.max() - uncertainty.min() + 1e-8)
    uncertainty = cv2.resize(uncertainty.astype(np.float32), out_size, interpolation=cv2.INTER_LINEAR)
    timings["total"] = (time.perf_counter() - started) * 1000.0
    return ReferenceResult(
        binary=binary,
        probability=probability,
        uncertainty=uncertainty,
        scores=np_scores,
        low_res_logits=logits[:, 0],
    )
