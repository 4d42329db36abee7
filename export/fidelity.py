"""The export's fidelity gate: the ONNX model on onnxruntime (CPU) against the PyTorch model.

For each calibration image both sides run the full VREyeSAM procedure with the same seeded prompts; the
report records embedding and logit errors, per-prompt mask IoU and the final binary-mask IoU. An artifact
that misses a threshold is not written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from vreyesam.export.reference import TorchReference
from vreyesam.runtime import procedure
from vreyesam.runtime.segmenter import PredictOptions, Segmenter


@dataclass(frozen=True)
class Thresholds:
    min_final_iou: float = 0.999
    max_logits_relative_error: float = 1e-4


@dataclass(frozen=True)
class ImageFidelity:
    name: str
    height: int
    width: int
    embedding_max_abs_error: float
    embedding_relative_error: float
    logits_max_abs_error: float
    logits_relative_error: float
    scores_max_abs_error: float
    prompt_mask_iou_min: float
    prompt_mask_iou_mean: float
    final_mask_iou: float


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks; two empty masks agree perfectly (1.0)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _errors(actual: Iterable[np.ndarray], expected: Iterable[torch.Tensor]) -> tuple[float, float]:
    max_abs, scale = 0.0, 0.0
    for got, want in zip(actual, expected, strict=True):
        reference = want.numpy()
        max_abs = max(max_abs, float(np.abs(got - reference).max()))
        scale = max(scale, float(np.abs(reference).max()))
    return max_abs, max_abs / (scale or 1.0)


def measure_image(name: str, image_rgb: np.ndarray, segmenter: Segmenter, reference: TorchReference) -> ImageFidelity:
    manifest = segmenter.manifest
    threshold = manifest.procedure.threshold
    prepared = segmenter.prepare(image_rgb)
    points = segmenter.prompt_points(prepared, PredictOptions())
    model_points = procedure.to_model_frame(points, prepared.fitted_hw, manifest.preprocessing.image_size)

    features = segmenter.encode(prepared.tensor)
    logits, scores = segmenter.decode(features, model_points)
    ours = segmenter.postprocess(prepared, points, logits, scores, threshold)

    torch_features = reference.features(prepared.fitted)
    torch_logits, torch_scores = reference.decode(torch_features, model_points)
    torch_masks = reference.masks(torch_logits, prepared.fitted_hw, manifest.procedure.mask_logit_threshold)
    torch_binary = reference.binary(torch_masks, torch_scores, threshold).numpy().astype(np.uint8)
    torch_final = procedure.resize_to(torch_binary, prepared.input_hw, cv2.INTER_NEAREST).astype(bool)

    our_masks = procedure.upscale_logits(logits, prepared.fitted_hw) > manifest.procedure.mask_logit_threshold
    prompt_ious = [iou(a, b) for a, b in zip(our_masks, torch_masks.numpy(), strict=True)]
    embed_abs, embed_rel = _errors(
        (features.image_embed, features.high_res_feats_0, features.high_res_feats_1), torch_features
    )
    logits_abs, logits_rel = _errors([logits], [torch_logits])
    return ImageFidelity(
        name=name,
        height=prepared.input_hw[0],
        width=prepared.input_hw[1],
        embedding_max_abs_error=embed_abs,
        embedding_relative_error=embed_rel,
        logits_max_abs_error=logits_abs,
        logits_relative_error=logits_rel,
        scores_max_abs_error=float(np.abs(scores - torch_scores.numpy()).max()),
        prompt_mask_iou_min=min(prompt_ious),
        prompt_mask_iou_mean=float(np.mean(prompt_ious)),
        final_mask_iou=iou(ours.binary, torch_final),
    )


def failures(results: list[ImageFidelity], thresholds: Thresholds) -> list[str]:
    """One line per image and metric that misses its threshold."""
    problems = []
    for result in results:
        if not result.final_mask_iou >= thresholds.min_final_iou:
            problems.append(f"{result.name}: final mask IoU {result.final_mask_iou:.5f} < {thresholds.min_final_iou}")
        if not result.logits_relative_error <= thresholds.max_logits_relative_error:
            problems.append(
                f"{result.name}: logits relative error {result.logits_relative_error:.2e} "
                f"> {thresholds.max_logits_relative_error:.0e}"
            )
    return problems


def report(results: list[ImageFidelity], thresholds: Thresholds, passed: bool) -> dict[str, object]:
    return {
        "passed": passed,
        "measured_on": "onnxruntime CPUExecutionProvider vs torch CPU",
        "thresholds": asdict(thresholds),
        "worst": {
            "final_mask_iou": min(r.final_mask_iou for r in results),
            "prompt_mask_iou_min": min(r.prompt_mask_iou_min for r in results),
            "logits_relative_error": max(r.logits_relative_error for r in results),
            "embedding_relative_error": max(r.embedding_relative_error for r in results),
        },
        "images": [asdict(r) for r in results],
    }
