"""The host's part of the procedure: prompt points and statistics, against the reference's own arithmetic."""

from __future__ import annotations

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


def test_mask_statistics() -> None:
    stats = procedure.mask_statistics(20, (10, 20), np.array([0.2, 0.4], np.float32))
    assert (stats.area_px, stats.coverage_percent) == (20, 10.0)
    assert stats.score_mean == pytest.approx(0.3) and stats.score_max == pytest.approx(0.4)
