"""The quality gate against what the synthetic generator knows: how much of each iris its lids show, where
its reflections are, how sharp it drew it."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from vreyesam.runtime.media.iris import NO_IRIS, iris_geometry
from vreyesam.runtime.media.quality import DEFAULT_GATE, NO_MEASURES, REASONS, image_measures, judge
from vreyesam.runtime.settings import QualityGate, SettingsError, load_settings
from vreyesam.runtime.tools.eye_drawing import render
from vreyesam.runtime.tools.eye_geometry import sample_params, true_visible_fraction, with_openness

EYES = 200


@pytest.fixture(scope="module")
def verdicts() -> list[tuple[float, bool, tuple[str, ...]]]:
    """(true visible fraction, accepted, reasons) of eyes whose lids close from wide open to shut."""
    found = []
    for index in range(EYES):
        rng = np.random.default_rng([29, index])
        params = with_openness(sample_params(rng), float(rng.uniform(0.0, 1.2)))
        image, mask = render(params)
        geometry = iris_geometry(mask)
        quality = judge(geometry, image_measures(image, mask, geometry.bbox), DEFAULT_GATE)
        found.append((true_visible_fraction(params), quality.accepted, quality.reasons))
    return found


def test_open_eyes_are_accepted_and_closed_ones_rejected(verdicts: list[tuple[float, bool, tuple[str, ...]]]) -> None:
    """The default openness (0.5) against the truth: no eye showing under 40% or over 60% of its iris is
    judged wrongly, and at most 2% of all are."""
    assert min(v[0] for v in verdicts) < 0.1 and max(v[0] for v in verdicts) > 0.95  # shut to wide open
    wrong = [v for v in verdicts if v[1] != (v[0] >= DEFAULT_GATE.min_openness)]
    assert all(0.4 <= v[0] <= 0.6 for v in wrong), wrong
    assert len(wrong) <= 0.02 * EYES, wrong


def test_a_rejection_says_why(verdicts: list[tuple[float, bool, tuple[str, ...]]]) -> None:
    for visible, accepted, reasons in verdicts:
        assert accepted == (reasons == ()), (visible, reasons)
        if visible < 0.4:  # shut eyes have no iris left to fit; closing ones are closed (and may fit badly)
            assert reasons == ("no_iris",) or reasons[0] == "eye_closed", (visible, reasons)
    assert {reasons for _, _, reasons in verdicts} >= {("eye_closed",), ("no_iris",), ()}


def test_an_empty_mask_is_no_iris_not_an_error() -> None:
    image = np.zeros((120, 160, 3), np.uint8)
    mask = np.zeros((120, 160), bool)
    assert image_measures(image, mask, None) == NO_MEASURES
    quality = judge(NO_IRIS, NO_MEASURES, DEFAULT_GATE)
    assert (quality.accepted, quality.reasons) == (False, ("no_iris",))


def _open_eye() -> tuple[np.ndarray, np.ndarray]:
    return render(with_openness(sample_params(np.random.default_rng([29, 4])), 3.0))


def test_specular_fraction_counts_the_saturated_pixels_inside_the_mask() -> None:
    image, mask = _open_eye()
    geometry = iris_geometry(mask)
    before = image_measures(image, mask, geometry.bbox).specular_fraction
    assert before is not None
    glare = image.copy()
    inside = np.argwhere(mask)[:: max(1, int(mask.sum()) // 150)][:150]  # 150 iris pixels, spread out
    glare[inside[:, 0], inside[:, 1]] = 255
    outside = np.argwhere(~mask)[:500]
    glare[outside[:, 0], outside[:, 1]] = 255  # reflections outside the iris do not count
    already = np.count_nonzero(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[inside[:, 0], inside[:, 1]] >= 250)
    expected = before + (len(inside) - already) / mask.sum()
    assert image_measures(glare, mask, geometry.bbox).specular_fraction == pytest.approx(expected, abs=1e-4)


def test_sharpness_falls_as_the_image_is_blurred() -> None:
    image, mask = _open_eye()
    box = iris_geometry(mask).bbox
    scores = [image_measures(image, mask, box).sharpness_score]
    for sigma in (0.8, 1.6, 3.2):
        blurred = cv2.GaussianBlur(image, (0, 0), sigma)
        scores.append(image_measures(blurred, mask, box).sharpness_score)
    assert all(score is not None for score in scores)
    assert scores == sorted(scores, reverse=True) and scores[-1] < 0.5 * scores[0], scores


def test_each_reason_is_given_by_its_threshold_alone() -> None:
    image, mask = _open_eye()
    geometry = iris_geometry(mask)
    measures = image_measures(image, mask, geometry.bbox)
    assert judge(geometry, measures, DEFAULT_GATE).accepted
    assert geometry.occlusion90 is not None and geometry.offgaze_score is not None
    assert measures.sharpness_score is not None and measures.specular_fraction is not None
    strict = {
        "eye_closed": replace(DEFAULT_GATE, min_openness=geometry.occlusion90 + 0.01),
        "off_gaze": replace(DEFAULT_GATE, max_offgaze=geometry.offgaze_score - 0.01),
        "blurred": replace(DEFAULT_GATE, min_sharpness=measures.sharpness_score + 0.01),
        "specular": replace(DEFAULT_GATE, max_specular=measures.specular_fraction - 1e-4),
    }
    assert set(strict) | {"no_iris"} == set(REASONS)
    for reason, gate in strict.items():
        quality = judge(geometry, measures, gate)
        assert (quality.accepted, quality.reasons) == (False, (reason,))


def test_the_gate_comes_from_the_environment() -> None:
    env = {"VREYESAM_QUALITY_MIN_OPENNESS": "0", "VREYESAM_QUALITY_MIN_SHARPNESS": "0.25"}
    assert load_settings(env).quality_gate == QualityGate(min_openness=0.0, min_sharpness=0.25)
    for name, value in [
        ("MIN_OPENNESS", "1.5"),
        ("MAX_OFFGAZE", "-0.1"),
        ("MAX_SPECULAR", "nan"),
        ("MIN_SHARPNESS", "inf"),
    ]:
        with pytest.raises(SettingsError, match=f"VREYESAM_QUALITY_{name}"):
            load_settings({f"VREYESAM_QUALITY_{name}": value})
