"""Preprocessing without torch: the reference's fit to 1024, then SAM2's resize and normalisation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vreyesam.runtime.manifest import Preprocessing
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


def test_encoder_input_normalises_each_channel() -> None:
    prep = Preprocessing()
    flat = np.empty((50, 70, 3), np.uint8)
    flat[:] = (10, 128, 250)
    tensor = preprocess.encoder_input(flat, prep)
    assert tensor.shape == (3, 1024, 1024) and tensor.dtype == np.float32
    for channel, value in enumerate((10, 128, 250)):
        expected = (value / 255 - prep.mean[channel]) / prep.std[channel]
        np.testing.assert_allclose(tensor[channel], expected, rtol=1e-5)


def test_encoder_input_antialiases_a_downscale() -> None:
    """A 2048-wide stripe pattern shrunk to 1024 averages neighbours (antialiased), unlike point sampling."""
    stripes = np.zeros((2048, 2048, 3), np.uint8)
    stripes[:, ::2] = 255
    tensor = preprocess.encoder_input(stripes, Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    np.testing.assert_allclose(tensor[:, :, 1:-1], 0.5, atol=1e-5)
