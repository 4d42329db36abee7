"""The export's fidelity-gate report, as the manifest records it (part of the model-directory contract).

The exporter fills these records (export/fidelity.py); the runtime reads them back: a variant's thresholds
are what the server holds it to again when it gates it on its own device (model/device_gate.py).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class GateThresholds:
    """What a graph set must reach against torch fp32 to pass the export's fidelity gate."""

    min_final_iou: float = 0.999
    max_logits_relative_error: float = 1e-4
    min_confident_pixel_iou: float = 0.999


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
