"""The iris geometry of a mask (media/iris.py) against the truth of the synthetic eye generator, which draws
each eye from its own iris and pupil ellipses and eyelid curves: the fits are held to those ellipses and
the visible fractions to the generator's own count of the annulus its eyelids show.

The accuracy depends on how much of the limbus a mask shows, so the bounds are stated per visible fraction
(docs/iris.md gives the figures): an eye showing at least 60% of its iris is held to the tightest ones; an
eye showing less than 40% only has to be measured, not fitted well (its limbus shows in short arcs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from vreyesam.runtime.media.iris import NO_IRIS, iris_geometry
from vreyesam.runtime.tools.eye_drawing import render
from vreyesam.runtime.tools.eye_geometry import EyeParams, sample_params, true_visible_fraction, with_openness

EYES = 240


@dataclass(frozen=True)
class Error:
    visible: float  # the truth: share of the iris annulus the lids show
    centre_px: float
    axes: float  # the larger relative error of the two half-axes
    angle_deg: float | None  # of the major axis, where the ellipse is not near-circular (b/a < 0.9)
    occlusion90: float
    occlusion30: float


def _error(params: EyeParams) -> Error:
    _, mask = render(params)
    geometry = iris_geometry(mask)
    fit = geometry.ellipse
    assert fit is not None and geometry.occlusion90 is not None and geometry.occlusion30 is not None
    true_a, true_b = max(params.iris.axes), min(params.iris.axes)
    true_major = params.iris.angle if params.iris.axes[0] >= params.iris.axes[1] else params.iris.angle + 90.0
    angle = abs((fit.angle_deg - true_major + 90.0) % 180.0 - 90.0) if true_b / true_a < 0.9 else None
    return Error(
        visible=true_visible_fraction(params),
        centre_px=math.hypot(fit.x - params.iris.center[0], fit.y - params.iris.center[1]),
        axes=max(abs(fit.semi_major / true_a - 1.0), abs(fit.semi_minor / true_b - 1.0)),
        angle_deg=angle,
        occlusion90=abs(geometry.occlusion90 - true_visible_fraction(params, 90.0)),
        occlusion30=abs(geometry.occlusion30 - true_visible_fraction(params, 30.0)),
    )


@pytest.fixture(scope="module")
def errors() -> list[Error]:
    """Eyes of every pose the generator draws, their lids closed to 30-100% of their sampled opening."""
    found = []
    for index in range(EYES):
        rng = np.random.default_rng([11, index])
        found.append(_error(with_openness(sample_params(rng), float(rng.uniform(0.3, 1.0)))))
    return found


# (lowest visible fraction, centre px, half-axes, angle degrees, occlusion): the bounds per visible fraction.
BOUNDS = [(0.6, 1.1, 0.03, 5.0, 0.05), (0.4, 3.0, 0.12, 10.0, 0.08)]


@pytest.mark.parametrize(("visible", "centre", "axes", "angle", "occlusion"), BOUNDS)
def test_the_fits_hold_to_the_generators_ellipses(
    errors: list[Error], visible: float, centre: float, axes: float, angle: float, occlusion: float
) -> None:
    upper = min([bound[0] for bound in BOUNDS if bound[0] > visible], default=1.01)
    within = [error for error in errors if visible <= error.visible < upper]
    assert len(within) >= 50, len(within)  # enough eyes in every bucket to mean something
    assert max(error.centre_px for error in within) <= centre
    assert max(error.axes for error in within) <= axes
    assert max(error.angle_deg for error in within if error.angle_deg is not None) <= angle
    assert max(max(error.occlusion90, error.occlusion30) for error in within) <= occlusion


def test_every_eye_is_measured(errors: list[Error]) -> None:
    """Also the nearly closed ones (the generator's lids down to 30% of their opening): all fitted, none far off."""
    assert len(errors) == EYES and min(error.visible for error in errors) < 0.3
    assert max(error.centre_px for error in errors) < 10.0
    assert max(error.occlusion90 for error in errors) < 0.15


def test_a_fully_open_eye_gives_its_pupil_from_the_hole() -> None:
    params = with_openness(sample_params(np.random.default_rng([11, 3])), 3.0)  # lids well clear of the iris
    _, mask = render(params)
    geometry = iris_geometry(mask)
    assert geometry.pupil is not None and geometry.ellipse is not None
    assert math.hypot(geometry.pupil.x - params.pupil.center[0], geometry.pupil.y - params.pupil.center[1]) < 0.5
    assert abs(geometry.pupil.semi_major / max(params.pupil.axes) - 1.0) < 0.03
    assert geometry.occlusion90 is not None and geometry.occlusion90 > 0.97
    assert geometry.components == 1 and geometry.ellipse.boundary_share > 0.9


def test_the_same_mask_always_gets_the_same_answer() -> None:
    _, mask = render(with_openness(sample_params(np.random.default_rng([11, 5])), 0.5))
    assert iris_geometry(mask) == iris_geometry(mask.copy())


@pytest.mark.parametrize("pixels", [0, 1, 4])
def test_an_empty_or_tiny_mask_is_no_iris_not_an_error(pixels: int) -> None:
    mask = np.zeros((120, 160), bool)
    mask[60, 80 : 80 + pixels] = True
    geometry = iris_geometry(mask)
    assert geometry.ellipse is None and geometry.occlusion90 is None
    assert geometry == NO_IRIS or geometry.components == 1


@pytest.mark.parametrize("cell", [1, 4])
def test_noise_is_no_iris(cell: int) -> None:
    """Speckle, per pixel or in the 4 px cells of an upscaled low-resolution map (what an untrained model's
    mask looks like): many parts, no limbus, and its parts still counted."""
    noise = np.random.default_rng(7).random((512 // cell, 512 // cell)) < 0.3
    mask = np.kron(noise, np.ones((cell, cell), bool))
    geometry = iris_geometry(mask)
    assert geometry.ellipse is None and geometry.pupil is None and geometry.occlusion90 is None
    assert geometry.components > 100 and geometry.bbox is not None


def test_specks_beside_the_iris_leave_its_fit_as_it_was() -> None:
    params = with_openness(sample_params(np.random.default_rng([11, 8])), 0.8)
    _, mask = render(params)
    specked = mask.copy()
    specked[2:4, 2:4] = specked[-4:-2, -4:-2] = True  # two 4-pixel parts, far below 1% of the iris
    alone, beside = iris_geometry(mask), iris_geometry(specked)
    assert beside.components == alone.components + 2
    assert beside.ellipse == alone.ellipse and beside.pupil == alone.pupil


def test_a_band_across_the_image_is_no_limbus() -> None:
    """A straight band from border to border fits no ellipse that could be an iris in this image."""
    mask = np.zeros((300, 400), bool)
    mask[140:160, :] = True
    assert iris_geometry(mask).ellipse is None
