"""The synthetic eye generator: determinism, masks that follow the drawn geometry, files on disk."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from vreyesam.cli import main
from vreyesam.runtime.tools.eye_drawing import render
from vreyesam.runtime.tools.eye_geometry import Ellipse, EyeParams, eye_opening, open_eyelids, sample_params
from vreyesam.runtime.tools.synth import generate, write_dataset

SEEDS = range(8)
SMALL = {"width": 200, "height": 150}  # keeps the many-image tests fast


def _inside(ellipse: Ellipse, shape: tuple[int, int], grow: float) -> np.ndarray:
    """HxW bool from the ellipse equation, axes grown by `grow` px: independent of cv2's rasteriser."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dx, dy = xs - ellipse.center[0], ys - ellipse.center[1]
    rot = math.radians(ellipse.angle)
    u = dx * math.cos(rot) + dy * math.sin(rot)
    v = -dx * math.sin(rot) + dy * math.cos(rot)
    a, b = ellipse.axes[0] + grow, ellipse.axes[1] + grow
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _pixel(point: tuple[float, float]) -> tuple[int, int]:
    """(x, y) -> (row, column) of the pixel containing it."""
    return round(point[1]), round(point[0])


def _params(seed: int, **kwargs: object) -> EyeParams:
    return sample_params(np.random.default_rng(seed), **kwargs)  # type: ignore[arg-type]


def test_generate_is_deterministic_for_a_seed() -> None:
    first, second = generate(7, 3, **SMALL), generate(7, 3, **SMALL)
    assert [name for name, _, _ in first] == ["eye_0000", "eye_0001", "eye_0002"]
    for (name_a, image_a, mask_a), (name_b, image_b, mask_b) in zip(first, second, strict=True):
        assert name_a == name_b
        assert np.array_equal(image_a, image_b)
        assert np.array_equal(mask_a, mask_b)
    assert not np.array_equal(generate(8, 1, **SMALL)[0][1], first[0][1])


def test_image_i_does_not_depend_on_n() -> None:
    short, long = generate(3, 2, **SMALL), generate(3, 4, **SMALL)
    for (_, image_a, mask_a), (_, image_b, mask_b) in zip(short, long[:2], strict=True):
        assert np.array_equal(image_a, image_b)
        assert np.array_equal(mask_a, mask_b)


def test_image_and_mask_types() -> None:
    (_, image, mask), *_ = generate(0, 1, width=200, height=150)
    assert image.dtype == np.uint8
    assert image.shape == (150, 200, 3)
    assert mask.dtype == bool
    assert mask.shape == (150, 200)
    assert 0 < mask.sum() < mask.size / 4


def test_nir_is_gray_and_rgb_is_tinted() -> None:
    for _, image, _ in generate(1, 3, mode="nir", **SMALL):
        assert np.array_equal(image[..., 0], image[..., 1])
        assert np.array_equal(image[..., 0], image[..., 2])
    for _, image, mask in generate(1, 3, mode="rgb", **SMALL):
        iris = image[mask].astype(np.int16)
        assert np.abs(iris[:, 0] - iris[:, 2]).mean() > 10


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        generate(0, 1, mode="thermal")


@pytest.mark.parametrize("seed", SEEDS)
def test_mask_follows_iris_pupil_and_lids(seed: int) -> None:
    params = _params(seed)
    _, mask = render(params)
    shape = mask.shape
    # Within a pixel of the analytic boundaries: rasterising may round either way, never further.
    assert not (mask & ~_inside(params.iris, shape, 1.0)).any()
    assert not (mask & _inside(params.pupil, shape, -1.0)).any()
    opening = eye_opening(params).astype(np.float32)
    for row, col in zip(*np.nonzero(mask), strict=True):
        assert cv2.pointPolygonTest(opening, (float(col), float(row)), True) >= -1.0
    assert not mask[_pixel(params.pupil.center)]
    a, rot = params.iris.axes[0], math.radians(params.iris.angle)
    for side in (-1, 1):  # 2 px beyond both ends of the major axis
        x = params.iris.center[0] + side * (a + 2) * math.cos(rot)
        y = params.iris.center[1] + side * (a + 2) * math.sin(rot)
        assert not mask[_pixel((x, y))]


@pytest.mark.parametrize("seed", SEEDS)
def test_open_eyelids_mask_is_the_iris_ring(seed: int) -> None:
    params = open_eyelids(_params(seed))
    _, mask = render(params)
    iris, pupil = params.iris, params.pupil
    ring = _inside(iris, mask.shape, -1.0) & ~_inside(pupil, mask.shape, 1.0)
    assert not (ring & ~mask).any()
    # cv2 fills reach about half a pixel beyond the analytic outline, for the iris and the pupil alike.
    (a, b), (c, d) = iris.axes, pupil.axes
    expected = math.pi * ((a + 0.5) * (b + 0.5) - (c + 0.5) * (d + 0.5))
    assert mask.sum() == pytest.approx(expected, rel=0.006)
    # Halfway between the pupil and the limbus, along the major axis, is iris.
    rot, reach = math.radians(iris.angle), (iris.axes[0] + pupil.axes[0]) / 2
    point = (iris.center[0] + reach * math.cos(rot), iris.center[1] + reach * math.sin(rot))
    assert mask[_pixel(point)]


def test_upper_lid_hides_the_iris_above_it() -> None:
    params = open_eyelids(_params(2))
    (cx, cy), corner_y = params.iris.center, params.corners[0][1]
    # Control point at twice the apex offset: the lid's apex passes through the iris centre.
    lidded = replace(params, upper_lid=(cx, 2 * cy - corner_y))
    _, full = render(params)
    _, mask = render(lidded)
    column = round(cx)
    assert not mask[: math.floor(cy) - 1, column].any()
    assert full[: math.floor(cy) - 1, column].any()
    assert mask.sum() < 0.6 * full.sum()


def test_glints_stay_in_the_mask() -> None:
    params = _params(4, nir=True)
    glint_at = tuple(params.pupil.scaled(1.5).point(np.array([0.3]))[0])
    bare = replace(params, glints=())
    glinted = replace(params, glints=((glint_at[0], glint_at[1], 3.0),))
    image_bare, mask_bare = render(bare)
    image_glint, mask_glint = render(glinted)
    assert np.array_equal(mask_bare, mask_glint)
    row, col = _pixel(glint_at)
    assert mask_glint[row, col]
    assert image_glint[row, col, 0] > image_bare[row, col, 0] + 40


def test_write_dataset_writes_matching_pngs(tmp_path: Path) -> None:
    paths = write_dataset(tmp_path, 2, seed=5, width=160, height=120)
    assert paths == [tmp_path / "images" / "eye_0000.png", tmp_path / "images" / "eye_0001.png"]
    expected = generate(5, 2, width=160, height=120)
    for path, (name, image, mask) in zip(paths, expected, strict=True):
        written_image = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        written_mask = cv2.imread(str(tmp_path / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(written_image, image)
        assert written_mask.shape == (120, 160)
        assert set(np.unique(written_mask)) <= {0, 255}
        assert np.array_equal(written_mask == 255, mask)
    leftovers = sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".png")
    assert leftovers == []


def test_cli_writes_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    code = main(["synth", "--out", str(out), "-n", "2", "--width", "120", "--height", "90", "--mode", "nir"])
    assert code == 0
    assert capsys.readouterr().out.strip() == f"wrote 2 images and masks to {out}"
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["eye_0000.png", "eye_0001.png"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["-n", "0"], "-n must be at least 1"), (["-n", "1", "--width", "10"], "must be at least 64")],
)
def test_cli_rejects_bad_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["synth", "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "images").exists()
