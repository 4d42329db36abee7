"""The procedure's pure functions, each against the reference's own arithmetic written out here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vreyesam.runtime.model import procedure


def test_points_are_seeded_and_in_the_reference_square() -> None:
    points = procedure.sample_points((300, 400), 500, seed=7)
    assert points.shape == (500, 1, 2) and points.dtype == np.int64
    assert points.min() >= 0 and points.max() < 300  # both x and y below min(h, w), as the reference draws them
    assert np.array_equal(points, procedure.sample_points((300, 400), 500, seed=7))
    assert not np.array_equal(points, procedure.sample_points((300, 400), 500, seed=8))
    expected = np.random.default_rng(7).integers(0, 300, size=(500, 1, 2))
    assert np.array_equal(points, expected)


def test_points_move_to_the_model_frame_per_axis() -> None:
    points = np.array([[[200, 150]], [[0, 299]]])
    scaled = procedure.to_model_frame(points, (300, 400), 1024)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled[:, 0], [[512.0, 512.0], [0.0, 299 * 1024 / 300]], rtol=1e-6)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [([1.0, 3.0], [0.25, 0.75]), ([0.0, 0.0], [0.5, 0.5]), ([-1.0, 0.5], [0.5, 0.5])],
)
def test_score_weights(scores: list[float], expected: list[float]) -> None:
    np.testing.assert_allclose(procedure.score_weights(np.asarray(scores, np.float32)), expected)


def test_ensemble_equals_the_reference_vote_of_full_size_masks() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (6, 256, 256)).astype(np.float32)
    scores = rng.uniform(0.1, 1, 6).astype(np.float32)
    fitted_hw = (300, 400)
    probability = procedure.ensemble_probability(logits, scores, fitted_hw, 0.0)
    masks = np.stack([cv2.resize(m, (400, 300), interpolation=cv2.INTER_LINEAR) > 0 for m in logits])
    weights = scores / scores.sum()
    expected = np.clip((masks.astype(np.float32) * weights[:, None, None]).sum(0), 0, 1)
    assert probability.shape == fitted_hw and probability.dtype == np.float32
    np.testing.assert_allclose(probability, expected, atol=1e-6)


def test_uncertainty_comes_from_the_best_prompt_and_spans_zero_to_one() -> None:
    logits = np.zeros((2, 4, 4), np.float32)
    logits[1] = np.linspace(-5, 5, 16).reshape(4, 4)
    uncertainty = procedure.uncertainty_map(logits, np.array([0.1, 0.9], np.float32), logit_clamp=32.0)
    p = 1 / (1 + np.exp(-logits[1].astype(np.float64)))
    raw = 1 - np.abs(2 * p - 1)
    np.testing.assert_allclose(uncertainty, (raw - raw.min()) / (raw.max() - raw.min() + 1e-8), atol=1e-6)
    assert uncertainty.min() == 0.0 and uncertainty.max() == pytest.approx(1.0, abs=1e-6)


def test_extreme_logits_are_clamped_not_overflowed() -> None:
    logits = np.full((1, 2, 2), 1e6, np.float32)
    with np.errstate(over="raise"):
        uncertainty = procedure.uncertainty_map(logits, np.array([1.0], np.float32), logit_clamp=32.0)
    assert np.isfinite(uncertainty).all()


def test_resize_to_is_a_no_op_at_the_same_size() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert procedure.resize_to(array, (3, 4), cv2.INTER_LINEAR) is array
    assert procedure.resize_to(array, (6, 8), cv2.INTER_NEAREST).shape == (6, 8)


def test_mask_statistics() -> None:
    binary = np.zeros((10, 20), bool)
    binary[:5, :4] = True
    stats = procedure.mask_statistics(binary, np.array([0.2, 0.4], np.float32))
    assert (stats.area_px, stats.coverage_percent) == (20, 10.0)
    assert stats.score_mean == pytest.approx(0.3) and stats.score_max == pytest.approx(0.4)
