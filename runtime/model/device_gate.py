"""The start-up gate of a variant converted without its device: the fp16 encoder against fp32, on the GPU.

The export converts and gates `fp16-encoder` on a build machine without a GPU (onnxruntime's CPU kernels);
the CUDA provider's fp16 kernels are other code. So before serving it, the server runs the calibration
images stored in the model directory through both encoders on the serving device, the rest of the pipeline
shared, and holds the variant to the export's reduced-precision thresholds against fp32 there. A miss means
the variant is not served.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from vreyesam.runtime.engines.graph import Graph
from vreyesam.runtime.gate_report import GateThresholds, misses
from vreyesam.runtime.model.agreement import confident_pixel_iou, iou, relative_error
from vreyesam.runtime.model.segmenter import PredictOptions, Segmenter, replace_encoder


@dataclass(frozen=True)
class DeviceGateResult:
    images: int
    logits_relative_error: float  # the worst over the images
    confident_pixel_iou: float
    final_mask_iou: float
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


def calibration_images(data: bytes) -> list[np.ndarray]:
    """The RGB uint8 images of `calibration.npz`, in their stored order."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return [archive[name] for name in sorted(archive.files)]


def gate(
    variant: Segmenter, fp32_encoder: Graph, images: list[np.ndarray], thresholds: GateThresholds
) -> DeviceGateResult:
    """The variant against the same pipeline with the fp32 encoder, on each image, with default prompts."""
    reference = replace_encoder(variant, fp32_encoder)
    options = PredictOptions(maps=("binary",))
    logits_error, confident, final = 0.0, 1.0, 1.0
    for image in images:
        ours, expected = variant.predict(image, options), reference.predict(image, options)
        if ours.low_res_logits is None or expected.low_res_logits is None:
            raise ValueError("the device gate needs the logits")
        logits_error = max(logits_error, relative_error(ours.low_res_logits, expected.low_res_logits))
        confident = min(confident, confident_pixel_iou(ours.low_res_logits, expected.low_res_logits))
        final = min(final, iou(ours.binary, expected.binary))
    measured = {"logits_relative_error": logits_error, "confident_pixel_iou": confident, "final_mask_iou": final}
    problems = misses(measured, thresholds.bounds())
    return DeviceGateResult(len(images), logits_error, confident, final, tuple(problems))
