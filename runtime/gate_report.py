"""The export's fidelity-gate report, as the manifest records it (part of the model-directory contract), and
the one way every gate compares what it measured with its bounds.

The exporter fills these records (export/fidelity.py); the runtime reads them back: a variant's thresholds
are what the server holds it to again when it gates it on its own device (model/device_gate.py). The export
gate, the device gate, the golden self-test and the CUDA-graph check all measure with `model.agreement` and
judge with `misses`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


def misses(measured: Mapping[str, float], bounds: Mapping[str, float]) -> list[str]:
    """One line per bounded measure outside its bound: a measure named `*_iou` must be at least its bound, any
    other (an error) at most; NaN never passes. Measures without a bound are not judged."""
    found = []
    for name, bound in bounds.items():
        value = measured[name]
        passed = value >= bound if name.endswith("_iou") else value <= bound
        if not passed:  # NaN compares false either way
            sign = "<" if name.endswith("_iou") else ">"
            found.append(f"{name.replace('_', ' ')} {value:.4g} {sign} {bound:.4g}")
    return found


@dataclass(frozen=True)
class GateThresholds:
    """What a graph set must reach against torch fp32 to pass the export's fidelity gate."""

    min_final_iou: float = 0.999
    max_logits_relative_error: float = 1e-4
    min_confident_pixel_iou: float = 0.999

    def bounds(self) -> dict[str, float]:
        """The thresholds by the name of the measure each bounds (for `misses`)."""
        return {
            "final_mask_iou": self.min_final_iou,
            "confident_pixel_iou": self.min_confident_pixel_iou,
            "logits_relative_error": self.max_logits_relative_error,
        }


@dataclass(frozen=True)
class ImageFidelity:
    """One calibration image: the exported graphs against torch, both running the VREyeSAM procedure."""

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
    confident_pixel_iou: float
    final_mask_iou: float


@dataclass(frozen=True)
class WorstCase:
    """The worst of each gated figure over the calibration images."""

    final_mask_iou: float
    prompt_mask_iou_min: float
    confident_pixel_iou: float
    logits_relative_error: float
    embedding_relative_error: float


@dataclass(frozen=True)
class FidelityReport:
    """The gate's verdict and figures; `problems` says what missed (empty when it passed)."""

    passed: bool
    measured_on: str = ""
    thresholds: GateThresholds | None = None
    worst: WorstCase | None = None
    images: tuple[ImageFidelity, ...] = ()
    problems: tuple[str, ...] = ()


def _record(cls: type, raw: dict[str, Any]) -> Any:
    """A flat dataclass from its JSON object (unknown keys are ignored, missing ones are an error)."""
    return cls(**{item.name: raw[item.name] for item in fields(cls) if item.name in raw})


def fidelity_from_dict(raw: dict[str, Any]) -> FidelityReport:
    thresholds, worst = raw.get("thresholds"), raw.get("worst")
    return FidelityReport(
        passed=bool(raw["passed"]),
        measured_on=str(raw.get("measured_on", "")),
        thresholds=_record(GateThresholds, thresholds) if thresholds else None,
        worst=_record(WorstCase, worst) if worst else None,
        images=tuple(_record(ImageFidelity, image) for image in raw.get("images", [])),
        problems=tuple(str(problem) for problem in raw.get("problems", [])),
    )
