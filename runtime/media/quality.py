"""Is this an iris to use? Two measures of the image inside the mask, and the gate's verdict with its reasons.

`image_measures` reads the image where the mask says iris: `sharpness_score`, the standard deviation of the
Laplacian of its grey levels (0-1 scale) over the mask shrunk by 2 px (the mask's own edge is an edge of the
image too, and would count as sharpness); `specular_fraction`, the share of the mask's pixels at grey level
250 or above (a light's reflection, which hides the texture under it).

`judge` holds the geometry and these measures to a `settings.QualityGate`. Its reasons, in this order:
`no_iris` (no limbus fitted: an empty, tiny or noisy mask: never an error), `eye_closed` (`occlusion90`
below the gate's openness), `off_gaze`, `blurred`, `specular`. Accepted means no reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np

from vreyesam.runtime.media.iris import IrisGeometry, iris_fields, iris_geometry
from vreyesam.runtime.media.opencv import cv2
from vreyesam.runtime.settings import QualityGate

Reason = Literal["no_iris", "eye_closed", "off_gaze", "blurred", "specular"]
REASONS: tuple[Reason, ...] = get_args(Reason)
SPECULAR_LEVEL = 250  # grey level (of 255) from which a pixel is a reflection
EDGE_PX = 2  # the mask is shrunk by this before sharpness is measured
MIN_SHARPNESS_PIXELS = 50  # fewer pixels left than this: no sharpness


@dataclass(frozen=True)
class ImageMeasures:
    """What the image shows inside the iris mask; None where the mask is empty (or, for sharpness, too thin)."""

    sharpness_score: float | None
    specular_fraction: float | None


@dataclass(frozen=True)
class Quality:
    accepted: bool
    reasons: tuple[Reason, ...]


NO_MEASURES = ImageMeasures(None, None)
NO_IRIS_QUALITY = Quality(False, ("no_iris",))
DEFAULT_GATE = QualityGate()


def image_measures(image: np.ndarray, mask: np.ndarray, bbox: tuple[int, int, int, int] | None) -> ImageMeasures:
    """HxWx3 uint8 RGB image and its HxW bool iris mask (whose box is `bbox`, as `IrisGeometry.bbox`)."""
    if bbox is None:
        return NO_MEASURES
    x, y, width, height = bbox
    # The box and a margin for the Laplacian's reach: the measures need nothing outside it.
    top, left = max(y - 1, 0), max(x - 1, 0)
    bottom, right = min(y + height + 1, mask.shape[0]), min(x + width + 1, mask.shape[1])
    grey = cv2.cvtColor(np.ascontiguousarray(image[top:bottom, left:right]), cv2.COLOR_RGB2GRAY)
    inside = np.ascontiguousarray(mask[top:bottom, left:right], dtype=np.uint8)
    count = int(inside.sum())
    if count == 0:
        return NO_MEASURES
    specular = round(float(np.count_nonzero(grey[inside > 0] >= SPECULAR_LEVEL)) / count, 4)
    kernel = np.ones((3, 3), np.uint8)
    core = cv2.erode(inside, kernel, iterations=EDGE_PX, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    if np.count_nonzero(core) < MIN_SHARPNESS_PIXELS:
        return ImageMeasures(None, specular)
    laplacian = cv2.Laplacian(grey.astype(np.float32) / 255.0, cv2.CV_32F, ksize=3)
    return ImageMeasures(round(float(laplacian[core].std()), 4), specular)


def assess(
    mask: np.ndarray, image: np.ndarray | None, gate: QualityGate
) -> tuple[IrisGeometry, ImageMeasures, Quality]:
    """The geometry of an HxW bool iris mask, the measures of its HxWx3 RGB image (none without one) and the
    gate's verdict on them: what every answer says of the iris."""
    geometry = iris_geometry(mask)
    measures = NO_MEASURES if image is None else image_measures(image, mask, geometry.bbox)
    return geometry, measures, judge(geometry, measures, gate)


def iris_block(geometry: IrisGeometry, measures: ImageMeasures) -> dict[str, Any]:
    """The `iris` block of an answer (JSON: None as null)."""
    return {**iris_fields(geometry), **asdict(measures)}


def judge(geometry: IrisGeometry, measures: ImageMeasures, gate: QualityGate) -> Quality:
    """The gate's verdict: accepted, or the reasons it is not (REASONS' order)."""
    if geometry.ellipse is None or geometry.occlusion90 is None:
        return NO_IRIS_QUALITY
    found: list[Reason] = []
    if geometry.occlusion90 < gate.min_openness:
        found.append("eye_closed")
    if geometry.offgaze_score is not None and geometry.offgaze_score > gate.max_offgaze:
        found.append("off_gaze")
    # A measure the image could not give (no image, too thin a mask) is not held against the iris.
    sharpness, specular = measures.sharpness_score, measures.specular_fraction
    if gate.min_sharpness > 0.0 and sharpness is not None and sharpness < gate.min_sharpness:
        found.append("blurred")
    if specular is not None and specular > gate.max_specular:
        found.append("specular")
    return Quality(not found, tuple(found))
