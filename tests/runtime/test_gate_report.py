"""The one comparison every gate makes (export gate, device gate, golden self-test, CUDA-graph check)."""

from __future__ import annotations

import math

from vreyesam.runtime.gate_report import GateThresholds, misses


def test_an_iou_is_a_lower_bound_and_an_error_an_upper_one() -> None:
    bounds = {"final_mask_iou": 0.99, "logits_relative_error": 1e-2}
    assert misses({"final_mask_iou": 0.99, "logits_relative_error": 1e-2}, bounds) == []  # the bounds themselves pass
    assert misses({"final_mask_iou": 0.98, "logits_relative_error": 0.02}, bounds) == [
        "final mask iou 0.98 < 0.99",
        "logits relative error 0.02 > 0.01",
    ]


def test_nan_never_passes_and_unbounded_measures_are_not_judged() -> None:
    measured = {"final_mask_iou": math.nan, "logits_relative_error": math.nan, "embedding_relative_error": 9.0}
    assert len(misses(measured, {"final_mask_iou": 0.5, "logits_relative_error": 1.0})) == 2


def test_the_gate_thresholds_name_the_measures_they_bound() -> None:
    assert GateThresholds(0.9, 1e-3, 0.95).bounds() == {
        "final_mask_iou": 0.9,
        "confident_pixel_iou": 0.95,
        "logits_relative_error": 1e-3,
    }
