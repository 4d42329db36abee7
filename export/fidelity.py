"""The export's fidelity gate: the exported model, in each precision variant, against the PyTorch model.

For each calibration image both sides run the full VREyeSAM procedure with the same seeded prompts (ours
through all four graphs: preprocessing, encoder, decoder, procedure); the report records embedding and
logit errors, per-prompt, confident-pixel and final binary-mask IoU. An fp32
model that misses a threshold is not written; a reduced-precision variant that misses is recorded as
rejected and never served.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from vreyesam.export.reference import TorchReference
from vreyesam.runtime.gate_report import FidelityReport, GateThresholds, ImageFidelity, WorstCase, misses
from vreyesam.runtime.surface import (
    PreparedImage,
    Segmenter,
    confident_pixel_iou,
    iou,
    to_model_frame,
)

# fp32 graphs ship only within the strict defaults of GateThresholds; reduced-precision variants within these.
STRICT = GateThresholds()
REDUCED_PRECISION = GateThresholds(min_final_iou=0.0, max_logits_relative_error=1e-2, min_confident_pixel_iou=0.99)


@dataclass(frozen=True)
class ReferenceOutcome:
    """What torch gives for one calibration image; computed once and compared with every variant."""

    name: str
    image_rgb: np.ndarray
    features: tuple[np.ndarray, np.ndarray, np.ndarray]
    logits: np.ndarray
    scores: np.ndarray
    masks: np.ndarray  # per-prompt boolean masks in the fitted frame
    final: np.ndarray  # the final binary mask at the input size


def _errors(actual: Iterable[np.ndarray], expected: Iterable[np.ndarray]) -> tuple[float, float]:
    max_abs, scale = 0.0, 0.0
    for got, want in zip(actual, expected, strict=True):
        max_abs = max(max_abs, float(np.abs(got - want).max()))
        scale = max(scale, float(np.abs(want).max()))
    return max_abs, max_abs / (scale or 1.0)


def _prompts(segmenter: Segmenter, image_rgb: np.ndarray) -> tuple[PreparedImage, np.ndarray, np.ndarray]:
    prepared = segmenter.prepare(image_rgb)
    points = segmenter.prompt_points(prepared, segmenter.parameters())
    model_points = to_model_frame(points, prepared.fitted_hw, segmenter.manifest.preprocessing.image_size)
    return prepared, points, model_points


def reference_outcome(
    name: str, image_rgb: np.ndarray, segmenter: Segmenter, reference: TorchReference
) -> ReferenceOutcome:
    """Torch's side for one image, with the same fitted image and seeded prompts as the runtime uses."""
    manifest = segmenter.manifest
    prepared, _, model_points = _prompts(segmenter, image_rgb)
    features = reference.features(prepared.fitted)
    logits, scores = reference.decode(features, model_points)
    masks = reference.masks(logits, prepared.fitted_hw, manifest.procedure.mask_logit_threshold)
    binary = reference.binary(masks, scores, manifest.procedure.threshold).numpy().astype(np.uint8)
    return ReferenceOutcome(
        name=name,
        image_rgb=image_rgb,
        features=tuple(feature.numpy() for feature in features),  # type: ignore[arg-type]
        logits=logits.numpy(),
        scores=scores.numpy(),
        masks=masks.numpy(),
        final=_resized(binary, prepared.input_hw, cv2.INTER_NEAREST).astype(bool),
    )


def _resized(array: np.ndarray, size_hw: tuple[int, int], interpolation: int) -> np.ndarray:
    """The reference's cv2 resize (Inference.py resizes its outputs this way)."""
    return cv2.resize(array, (size_hw[1], size_hw[0]), interpolation=interpolation)


def _prompt_masks(logits: np.ndarray, fitted_hw: tuple[int, int], mask_threshold: float) -> np.ndarray:
    """Nxhxw bool: each prompt's mask in the fitted frame (bilinear upscale, then the logit threshold)."""
    return np.stack([_resized(mask, fitted_hw, cv2.INTER_LINEAR) > mask_threshold for mask in logits])


def measure_image(segmenter: Segmenter, expected: ReferenceOutcome) -> ImageFidelity:
    manifest = segmenter.manifest
    prepared, _, model_points = _prompts(segmenter, expected.image_rgb)
    features = segmenter.encode(prepared)
    decoded = segmenter.decode(features, model_points)
    binary = segmenter.finish(prepared, decoded, segmenter.parameters().threshold, ("binary",))["binary"]
    logits, scores = segmenter.decoder.to_host(decoded.logits), decoded.scores

    our_masks = _prompt_masks(logits, prepared.fitted_hw, manifest.procedure.mask_logit_threshold)
    prompt_ious = [iou(a, b) for a, b in zip(our_masks, expected.masks, strict=True)]
    embeddings = (features.image_embed, features.high_res_feats_0, features.high_res_feats_1)
    embed_abs, embed_rel = _errors([segmenter.encoder.to_host(value) for value in embeddings], expected.features)
    logits_abs, logits_rel = _errors([logits], [expected.logits])
    return ImageFidelity(
        name=expected.name,
        height=prepared.input_hw[0],
        width=prepared.input_hw[1],
        embedding_max_abs_error=embed_abs,
        embedding_relative_error=embed_rel,
        logits_max_abs_error=logits_abs,
        logits_relative_error=logits_rel,
        scores_max_abs_error=float(np.abs(scores - expected.scores).max()),
        prompt_mask_iou_min=min(prompt_ious),
        prompt_mask_iou_mean=float(np.mean(prompt_ious)),
        confident_pixel_iou=confident_pixel_iou(logits, expected.logits),
        final_mask_iou=iou(binary, expected.final),
    )


def failures(results: list[ImageFidelity], thresholds: GateThresholds) -> list[str]:
    """One line per image and metric that misses its threshold."""
    return [f"{result.name}: {miss}" for result in results for miss in misses(asdict(result), thresholds.bounds())]


def report(
    results: list[ImageFidelity], thresholds: GateThresholds, problems: list[str], measured_on: str
) -> FidelityReport:
    return FidelityReport(
        passed=not problems,
        measured_on=f"{measured_on} vs torch fp32 CPU",
        thresholds=thresholds,
        worst=WorstCase(
            final_mask_iou=min(r.final_mask_iou for r in results),
            prompt_mask_iou_min=min(r.prompt_mask_iou_min for r in results),
            confident_pixel_iou=min(r.confident_pixel_iou for r in results),
            logits_relative_error=max(r.logits_relative_error for r in results),
            embedding_relative_error=max(r.embedding_relative_error for r in results),
        ),
        images=tuple(results),
        problems=tuple(problems),
    )
