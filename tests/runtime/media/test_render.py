"""Tests for runtime/render.py: PNG outputs and COCO RLE (checked against pycocotools when installed)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vreyesam.runtime.media.render import (
    encode_png,
    iris_crop,
    mask_png,
    overlay,
    probability_png,
    rle_decode,
    rle_encode,
    uncertainty_colormap,
)


def _read_png(data: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def _disc(h: int = 30, w: int = 50) -> np.ndarray:
    """An HxW bool mask shaped like an iris: a disc off centre."""
    y, x = np.mgrid[0:h, 0:w]
    return (y - h * 0.4) ** 2 + (x - w * 0.6) ** 2 < (h * 0.3) ** 2


def test_encode_png_gray_roundtrip() -> None:
    gray = np.arange(200, dtype=np.uint8).reshape(10, 20)
    np.testing.assert_array_equal(_read_png(encode_png(gray)), gray)


def test_encode_png_writes_rgb_as_rgb() -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[0, 0] = (1, 2, 3)
    bgr = _read_png(encode_png(rgb))
    np.testing.assert_array_equal(bgr[..., ::-1], rgb)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros(4, np.uint8)],
    ids=["float", "two-channel", "1d"],
)
def test_encode_png_rejects_other_inputs(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="encode_png"):
        encode_png(bad)


def test_rgba_round_trips() -> None:
    rgba = np.random.default_rng(3).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    bgra = cv2.imdecode(np.frombuffer(encode_png(rgba), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA), rgba)


def test_the_iris_of_an_empty_mask_is_one_transparent_pixel() -> None:
    image = np.full((6, 8, 3), 200, np.uint8)
    assert not iris_crop(image, np.zeros((6, 8), bool)).any()
    assert iris_crop(image, np.zeros((6, 8), bool)).shape == (1, 1, 4)


def test_mask_png_is_0_or_255() -> None:
    mask = _disc()
    got = _read_png(mask_png(mask))
    assert got.dtype == np.uint8
    assert got.shape == mask.shape
    np.testing.assert_array_equal(got, np.where(mask, 255, 0))


def test_probability_png_truncates_like_the_reference() -> None:
    prob = np.array([[0.0, 0.2, 0.5, 0.999], [1.0, 1 / 255, 0.00392, 0.7]], np.float32)
    got = _read_png(probability_png(prob))
    np.testing.assert_array_equal(got, (prob * 255).astype(np.uint8))  # the reference's conversion
    assert got[0, 2] == 127  # 127.5 truncated, not rounded


def test_probability_png_clips_out_of_range() -> None:
    got = _read_png(probability_png(np.array([[-0.5, 1.5]], np.float32)))
    np.testing.assert_array_equal(got, [[0, 255]])


def test_uncertainty_colormap_matches_reference_imwrite(tmp_path: Path) -> None:
    u = np.linspace(0, 1, 12 * 30, dtype=np.float32).reshape(12, 30)
    # the reference: uint8 map through cv2.applyColorMap, written (BGR) with cv2.imwrite
    reference_path = tmp_path / "reference.png"
    cv2.imwrite(str(reference_path), cv2.applyColorMap((u * 255).astype(np.uint8), cv2.COLORMAP_PLASMA))
    reference = cv2.imread(str(reference_path), cv2.IMREAD_UNCHANGED)

    rgb = uncertainty_colormap(u)
    assert rgb.shape == (12, 30, 3)
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(_read_png(encode_png(rgb)), reference)
    # PLASMA runs from dark blue-violet (0) to yellow (1): check it is RGB, not BGR
    assert rgb[0, 0, 2] > rgb[0, 0, 0]
    assert rgb[-1, -1, 0] > rgb[-1, -1, 2]


def test_overlay_blends_only_inside_the_mask() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    mask = _disc()
    got = overlay(image, mask, color=(0, 255, 0), alpha=0.45)

    assert got.shape == image.shape
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got[~mask], image[~mask])
    expected = image[mask] * 0.55 + np.array([0, 255, 0]) * 0.45
    assert np.abs(got[mask].astype(np.float64) - expected).max() <= 0.5 + 1e-6
    assert image is not got  # the input is not modified


def test_overlay_extremes() -> None:
    image = np.full((2, 2, 3), 10, np.uint8)
    mask = np.ones((2, 2), bool)
    np.testing.assert_array_equal(overlay(image, mask, alpha=0.0), image)
    np.testing.assert_array_equal(overlay(image, mask, color=(1, 2, 3), alpha=1.0)[0, 0], (1, 2, 3))
    np.testing.assert_array_equal(overlay(image, ~mask), image)


def test_overlay_rejects_mismatched_mask() -> None:
    with pytest.raises(ValueError, match="does not match"):
        overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), bool))


# --- COCO RLE ----------------------------------------------------------------------------------------


def _masks() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    disc = _disc()
    return {
        "disc": disc,
        "empty": np.zeros((7, 9), bool),
        "full": np.ones((7, 9), bool),
        "starts_with_one": np.eye(5, dtype=bool),
        "one_pixel_on": np.ones((1, 1), bool),
        "one_pixel_off": np.zeros((1, 1), bool),
        "noise": rng.random((40, 33)) < 0.5,
        "sparse": rng.random((64, 48)) < 0.02,
        "row": rng.random((1, 100)) < 0.5,
        "column": rng.random((100, 1)) < 0.5,
        # long runs either side of small ones: negative and multi-char differences
        "big": np.pad(np.ones((700, 900), bool), ((0, 0), (300, 5))) ^ (np.arange(700)[:, None] % 97 == 0),
    }


def test_rle_known_value() -> None:
    # column-major: columns (0,0,1) (1,1,1) (0,1,1) -> runs 2 zeros, 4 ones, 1 zero, 2 ones;
    # the fourth run is stored as 2 - 4 = -2: one char, 0x1E (sign bit 0x10 set) + 48 = "N"
    mask = np.array([[0, 1, 0], [0, 1, 1], [1, 1, 1]], bool)
    assert rle_encode(mask) == {"size": [3, 3], "counts": "241N"}
    np.testing.assert_array_equal(rle_decode({"size": [3, 3], "counts": [2, 4, 1, 2]}), mask)


@pytest.mark.parametrize("name", sorted(_masks()))
def test_rle_roundtrip(name: str) -> None:
    mask = _masks()[name]
    rle = rle_encode(mask)
    assert rle["size"] == list(mask.shape)
    assert isinstance(rle["counts"], str)
    json.dumps(rle)  # JSON-ready as is
    decoded = rle_decode(rle)
    assert decoded.dtype == bool
    np.testing.assert_array_equal(decoded, mask)
    np.testing.assert_array_equal(rle_decode({**rle, "counts": rle["counts"].encode()}), mask)


# pycocotools' decode trips over numpy 2's __array__ copy keyword (its bug, not ours)
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.parametrize("name", sorted(_masks()))
def test_rle_equals_pycocotools(name: str) -> None:
    coco = pytest.importorskip("pycocotools.mask")
    mask = _masks()[name]
    expected = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle = rle_encode(mask)
    assert rle["counts"].encode("ascii") == expected["counts"]
    assert rle["size"] == list(expected["size"])
    np.testing.assert_array_equal(rle_decode(expected), mask)
    np.testing.assert_array_equal(coco.decode({**rle, "counts": rle["counts"].encode()}), mask)


def test_rle_equals_pycocotools_on_random_masks() -> None:
    coco = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(7)
    for _ in range(200):
        h, w = rng.integers(1, 40, size=2)
        mask = rng.random((h, w)) < rng.random()
        expected = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle_encode(mask)["counts"].encode("ascii") == expected["counts"]


@pytest.mark.parametrize(
    "rle",
    [
        {"size": [3, 3], "counts": [2, 4, 1]},  # covers 7 of 9 pixels
        {"size": [2, 2], "counts": "5"},  # 5 > 4
        {"size": [2, 2], "counts": "4`"},  # ends in a continuation char
        {"size": [2, 2], "counts": "4 "},  # char below '0'
        {"size": [2, 2], "counts": [2, -1, 3]},
    ],
)
def test_rle_decode_rejects_malformed(rle: dict) -> None:
    with pytest.raises(ValueError, match="RLE"):
        rle_decode(rle)


def test_rle_of_a_large_noisy_mask_is_fast() -> None:
    # vectorised: a 1024x1024 checkerboard has a million runs
    mask = (np.indices((1024, 1024)).sum(axis=0) % 2).astype(bool)
    rle = rle_encode(mask)
    np.testing.assert_array_equal(rle_decode(rle), mask)
