"""Preprocessing without torch: the reference's fit to 1024 (SAM2's resize and normalisation are a graph)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vreyesam.runtime.model import preprocess


@pytest.mark.parametrize(
    ("hw", "expected"),
    [((300, 400), (768, 1024)), ((400, 300), (1024, 768)), ((1080, 1920), (576, 1024)), ((7, 3), (1024, 438))],
)
def test_fitted_size_truncates_as_the_reference(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    height, width = hw
    ratio = min(1024 / width, 1024 / height)
    assert preprocess.fitted_size(height, width, 1024) == expected == (int(height * ratio), int(width * ratio))


def test_fit_image_is_cv2_linear_on_uint8() -> None:
    image = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    fitted = preprocess.fit_image(image, 1024)
    assert fitted.shape == (768, 1024, 3) and fitted.dtype == np.uint8
    assert np.array_equal(fitted, cv2.resize(image, (1024, 768), interpolation=cv2.INTER_LINEAR))
