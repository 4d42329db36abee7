"""The iris as geometry: the limbus and pupil ellipses fitted to a binary iris mask, and what follows from them.

Iris toolchains consume boundaries, not masks; an iris mask from a VR headset is the limbus ellipse cut by the
eyelids (and the image border), with the pupil as a hole where it is open. So the limbus is fitted to the
part of the mask's outer boundary that is limbus:

- the outer boundaries of its components (a nearly closed eye's pupil can split the iris in two); points on
  the image border are cuts, not limbus, and so are points off their convex hull (where the pupil opens onto
  a lid cut, the boundary runs around it);
- of the rest, the sides: where the boundary runs within 30 degrees of vertical. The lids cut the top and the
  bottom of the iris, and where they cross it they run closer to horizontal;
- RANSAC over the side points (seeded, so a mask always gets the same answer) finds the ellipse most of them
  lie on (within 1.5 px); the fit then takes every boundary point within 1.5 px of it, top and bottom arcs
  included where the lids leave them visible, and is refitted (OpenCV's `fitEllipseDirect`);
- where the mask has a pupil and the kept points surround the centre over less than 60% of the angles, the
  limbus is fitted with the pupil's shape (its axis ratio and angle: one circle, foreshortened by one gaze)
  and only its centre and size free, which a short arc on each side determines.

From the fits: `diameter_px` (the limbus' major axis), `offgaze_score` (the eccentricity of the limbus, or of
the pupil where rounder: open-iris' measure), `orientation_deg` (the mask's principal axis, from its moments),
and the visible fractions of the annulus between the fitted pupil and limbus: `occlusion90` (all of it) and
`occlusion30` (within 30 degrees of the image's horizontal axis, on both sides), as open-iris names them.
What is not an iris gets no fit: specks (parts under 1% of the largest) are left out of it; more than 8
parts beside them, or parts with a ragged edge, are noise; a fit wider than the image, centred outside it or
flatter than a 72-degree gaze is no limbus.
What a mask cannot tell: the eyelids and the pupil are inferred from where the iris ends, not segmented; a
pupil not open in the mask (no hole) is not found; a limbus visible nowhere on its sides is not fitted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

import numpy as np

from vreyesam.runtime.media.opencv import cv2

SIDE_DEG = 30.0  # boundary running within this of vertical: a side of the limbus
INLIER_PX = 1.5  # a boundary point this close to an ellipse lies on it
RANSAC_ROUNDS = 40
MIN_COVERAGE = 0.6  # share of 10-degree sectors around the centre the kept points must reach for a free fit
BAND_DEG = 30.0  # occlusion30's band either side of the horizontal axis
MIN_POINTS = 6
# Parts of the mask smaller than this share of its largest part are specks, not iris: their outlines are left
# out of the fit (a nearly closed eye's two halves are each far larger). More parts than MAX_PARTS beside them
# is no iris at all (noise): no fit. Both bound the work on a noisy mask.
MIN_PART_SHARE = 0.01
MAX_PARTS = 8
# An ellipse inside the image has a perimeter under pi/2 times its height plus width, and so has a pupil inside
# it: edge pixels of more than 6 times that sum (a ragged part, per-pixel noise) are no iris either; they are
# counted before the outlines are traced, which costs most on noise.
MAX_EDGE_PER_SIDE = 6
# A limbus is a circle seen off-axis: its axis ratio is the cosine of the gaze angle. Flatter than this (a gaze
# beyond about 72 degrees, where the iris is hardly visible at all) is a fit to something else, a lid line.
MIN_AXIS_RATIO = 0.3


@dataclass(frozen=True)
class FittedEllipse:
    """An ellipse fitted to boundary points, in the mask's pixel frame (pixel centres at integers)."""

    x: float
    y: float
    semi_major: float  # px
    semi_minor: float  # px
    angle_deg: float  # the major axis, degrees clockwise on screen from +x, in [0, 180)
    fit_residual_px: float  # median distance of the points it was fitted to
    boundary_share: float  # share of the boundary's points it was fitted to

    @property
    def eccentricity(self) -> float:
        return math.sqrt(max(0.0, 1.0 - (self.semi_minor / self.semi_major) ** 2))


@dataclass(frozen=True)
class IrisGeometry:
    """What the mask says of the iris; every figure None where the mask has no iris to measure."""

    ellipse: FittedEllipse | None  # the limbus
    pupil: FittedEllipse | None  # only where the mask has a hole
    diameter_px: float | None
    bbox: tuple[int, int, int, int] | None  # x, y, width, height of the mask
    components: int  # connected parts of the mask
    offgaze_score: float | None
    orientation_deg: float | None  # the mask's principal axis, degrees clockwise from +x, in (-90, 90]
    occlusion90: float | None
    occlusion30: float | None


NO_IRIS = IrisGeometry(None, None, None, None, 0, None, None, None, None)
BBOX_KEYS = ("x", "y", "width", "height")


def iris_fields(geometry: IrisGeometry) -> dict[str, Any]:
    """The geometry as the answers give it (JSON: None as null), the box's four numbers named."""
    fields = asdict(geometry)
    if geometry.bbox is not None:
        fields["bbox"] = dict(zip(BBOX_KEYS, geometry.bbox, strict=True))
    return fields


# An ellipse as OpenCV gives it: ((cx, cy), (full axis along its x, full axis along its y), angle in degrees).
CvEllipse = tuple[tuple[float, float], tuple[float, float], float]


def iris_geometry(mask: np.ndarray) -> IrisGeometry:
    """HxW bool iris mask -> its geometry (NO_IRIS-like Nones for an empty or too small mask)."""
    binary = np.ascontiguousarray(mask, dtype=np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count == 1:
        return NO_IRIS
    areas = stats[:, cv2.CC_STAT_AREA]
    areas[0] = 0  # the background
    kept = areas >= MIN_PART_SHARE * areas.max()
    x, y, width, height = (int(v) for v in cv2.boundingRect(binary))
    unfitted = replace(
        NO_IRIS,
        bbox=(x, y, width, height),
        components=count - 1,
        orientation_deg=_orientation(binary),
    )
    if kept.sum() > MAX_PARTS:
        return unfitted
    parts = binary if kept.sum() == count - 1 else kept.astype(np.uint8)[labels]
    if cv2.countNonZero(parts - cv2.erode(parts, None)) > MAX_EDGE_PER_SIDE * sum(binary.shape):
        return unfitted
    contours, hierarchy = cv2.findContours(parts, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    parents = hierarchy[0][:, 3]
    outer = np.flatnonzero(parents < 0)
    largest = max(outer, key=lambda index: cv2.contourArea(contours[index]))
    holes = np.flatnonzero(parents == largest)
    pupil = None
    if len(holes):
        hole = contours[max(holes, key=lambda index: len(contours[index]))]
        pupil = _fit_pupil(hole[:, 0, :].astype(np.float64))
    outlines = [contours[index][:, 0, :].astype(np.float64) for index in outer if len(contours[index]) >= MIN_POINTS]
    boundary = np.concatenate(outlines) if outlines else np.empty((0, 2))
    inner = _inner(boundary, binary.shape)  # not on the image border; on the hull (False) or inside it (True)
    limbus = _plausible(_fit_limbus(outlines, boundary, inner, pupil), binary.shape)
    if limbus is None:
        return replace(unfitted, pupil=pupil)
    if pupil is None:
        pupil = _pupil_from_notches(boundary, inner, limbus)
    eccentricities = [limbus.eccentricity, *([pupil.eccentricity] if pupil is not None else [])]
    return replace(
        unfitted,
        ellipse=limbus,
        pupil=pupil,
        diameter_px=2.0 * limbus.semi_major,
        offgaze_score=round(min(eccentricities), 4),
        occlusion90=visible_fraction(binary, limbus, pupil, 90.0),
        occlusion30=visible_fraction(binary, limbus, pupil, BAND_DEG),
    )


# ---------------------------------------------------------------- fitting


def _distances(points: np.ndarray, ellipses: np.ndarray) -> np.ndarray:
    """Signed distance of each point from each ellipse along its ray from the ellipse's centre (positive:
    outside), px: E x N for E ellipses given as rows (cx, cy, full axis 1, full axis 2, angle in degrees)."""
    cx, cy, d1, d2, angle = (ellipses[:, column : column + 1] for column in range(5))
    a, b, t = d1 / 2.0, d2 / 2.0, np.radians(angle)
    dx, dy = points[None, :, 0] - cx, points[None, :, 1] - cy
    u, v = dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)
    scale = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = (scale - 1.0) * np.hypot(u, v) / scale
    return np.where(scale > 0, distance, -np.minimum(a, b))


def _row(ellipse: CvEllipse) -> np.ndarray | None:
    (cx, cy), (d1, d2), angle = ellipse
    row = np.array([cx, cy, d1, d2, angle], np.float64)
    return row if np.isfinite(row).all() and d1 >= 2.0 and d2 >= 2.0 else None


def _residuals(points: np.ndarray, ellipse: CvEllipse) -> np.ndarray | None:
    """Signed distance of each point from the ellipse (see `_distances`); None for a degenerate ellipse."""
    row = _row(ellipse)
    return None if row is None else _distances(points, row[None])[0]


class Fit(Protocol):
    """An ellipse fitting: over any points, or over each of RANSAC's samples (R x k x 2; failed ones left out)."""

    def __call__(self, points: np.ndarray) -> CvEllipse: ...

    def samples(self, points: np.ndarray) -> list[CvEllipse]: ...


class _Free:
    """OpenCV's direct least-squares fit, every parameter free."""

    def __call__(self, points: np.ndarray) -> CvEllipse:
        (cx, cy), (d1, d2), angle = cv2.fitEllipseDirect(points.astype(np.float32))
        return (float(cx), float(cy)), (float(d1), float(d2)), float(angle)

    def samples(self, points: np.ndarray) -> list[CvEllipse]:
        ellipses = []
        for sample in points:
            try:
                ellipses.append(self(sample))
            except cv2.error:
                continue
        return ellipses


_free = _Free()


class _Shaped:
    """Fits with `shape`'s axis ratio and angle, centre and size free (a circle fit in its frame); RANSAC's
    three-point samples solved all at once."""

    def __init__(self, shape: CvEllipse) -> None:
        _, (d1, d2), self.angle = shape
        self.ratio, t = d2 / d1, math.radians(self.angle)
        self.cos, self.sin = math.cos(t), math.sin(t)

    def _frame(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates in which the shape is a circle."""
        x, y = points[..., 0], points[..., 1]
        return x * self.cos + y * self.sin, (-x * self.sin + y * self.cos) / self.ratio

    def _ellipse(self, cu: float, cv: float, c: float) -> CvEllipse:
        radius = math.sqrt(max(c + cu * cu + cv * cv, 0.0))
        cv *= self.ratio
        center = (cu * self.cos - cv * self.sin, cu * self.sin + cv * self.cos)
        return center, (2.0 * radius, 2.0 * radius * self.ratio), self.angle

    def __call__(self, points: np.ndarray) -> CvEllipse:
        u, v = self._frame(points)
        design = np.column_stack((2.0 * u, 2.0 * v, np.ones_like(u)))
        (cu, cv, c), *_ = np.linalg.lstsq(design, u * u + v * v, rcond=None)
        return self._ellipse(cu, cv, c)

    def samples(self, points: np.ndarray) -> list[CvEllipse]:
        """The circle through each of R samples of three points (R x 3 x 2); singular ones left out."""
        u, v = self._frame(points)
        design = np.stack((2.0 * u, 2.0 * v, np.ones_like(u)), axis=-1)
        solvable = np.linalg.det(design) != 0.0
        solved = np.linalg.solve(design[solvable], (u * u + v * v)[solvable][..., None])[..., 0]
        return [self._ellipse(*row) for row in solved.tolist()]


def _consensus(points: np.ndarray, candidates: np.ndarray, fit: Fit, sample: int) -> np.ndarray:
    """The candidates on the ellipse most of them lie on (RANSAC, seeded: a mask always gets the same answer),
    else all of them. The rounds' ellipses are judged together."""
    indices = np.flatnonzero(candidates)
    picks = np.random.default_rng(0).integers(0, len(indices), (RANSAC_ROUNDS, sample))
    picks = picks[[len(set(pick)) == sample for pick in picks.tolist()]]
    ellipses = fit.samples(points[indices[picks]]) if len(picks) else []
    rows = [row for row in map(_row, ellipses) if row is not None]
    if not rows:
        return candidates
    on = np.abs(_distances(points[indices], np.stack(rows))) < INLIER_PX
    best = np.zeros_like(candidates)
    best[indices[on[int(on.sum(axis=1).argmax())]]] = True
    return best if best.sum() >= MIN_POINTS else candidates


def _grown(points: np.ndarray, kept: np.ndarray, usable: np.ndarray, fit: Fit) -> tuple[CvEllipse, np.ndarray] | None:
    """The fit over `kept`, grown to every usable point within INLIER_PX of it and refitted (a few rounds)."""
    try:
        ellipse = fit(points[kept])
    except (cv2.error, np.linalg.LinAlgError, ValueError):
        return None
    least = max(MIN_POINTS, int(0.5 * kept.sum()))
    for _ in range(4):
        residuals = _residuals(points, ellipse)
        if residuals is None:
            return None
        grown = usable & (np.abs(residuals) < INLIER_PX)
        if grown.sum() < least or (grown == kept).all():
            break
        kept = grown
        ellipse = fit(points[kept])
    return ellipse, kept


def _on_hull(points: np.ndarray) -> np.ndarray:
    """Whether each point lies within INLIER_PX of the points' convex hull."""
    hull = cv2.convexHull(points.astype(np.float32))[:, 0, :].astype(np.float64)
    start, end = hull, np.roll(hull, -1, axis=0)
    edge = end - start
    length2 = np.maximum((edge**2).sum(axis=1), 1e-12)
    offset = points[:, None, :] - start[None, :, :]
    along = np.clip((offset * edge[None]).sum(axis=2) / length2[None], 0.0, 1.0)
    nearest = start[None] + along[..., None] * edge[None]
    return np.sqrt(((points[:, None, :] - nearest) ** 2).sum(axis=2)).min(axis=1) < INLIER_PX


def _coverage(points: np.ndarray, ellipse: CvEllipse) -> float:
    (cx, cy), _, _ = ellipse
    angles = np.degrees(np.arctan2(points[:, 1] - cy, points[:, 0] - cx)) % 360.0
    return len(np.unique((angles // 10).astype(int))) / 36.0


# A pupil's outline is traced on the iris pixels around it, one pixel beyond the pupil's own edge pixels (the
# limbus' outline is traced on the iris' own edge pixels): its fit is brought in by that pixel (measured bias
# without it: +0.93 px on the half-axes of synthetic pupils, against -0.01 px for the limbus).
PUPIL_INSET_PX = 1.0


def _fitted(points: np.ndarray, ellipse: CvEllipse, kept: np.ndarray, total: int, inset: float = 0.0) -> FittedEllipse:
    (cx, cy), (d1, d2), angle = ellipse
    d1, d2 = d1 - 2.0 * inset, d2 - 2.0 * inset
    major, minor = (d1, d2) if d1 >= d2 else (d2, d1)
    major_angle = angle if d1 >= d2 else angle + 90.0
    residuals = _residuals(points[kept], ellipse)
    return FittedEllipse(
        x=round(cx, 3),
        y=round(cy, 3),
        semi_major=round(major / 2.0, 3),
        semi_minor=round(minor / 2.0, 3),
        angle_deg=round(major_angle % 180.0, 2),
        fit_residual_px=round(float(np.median(np.abs(residuals))) if residuals is not None else 0.0, 3),
        boundary_share=round(float(kept.sum()) / total, 3),
    )


def _fit_pupil(hole: np.ndarray) -> FittedEllipse | None:
    """The pupil: an ellipse through the hole's boundary (a pupil is seldom cut by anything but a lid)."""
    if len(hole) < MIN_POINTS:
        return None
    everything = np.ones(len(hole), bool)
    grown = _grown(hole, everything, everything, _free)
    return None if grown is None else _fitted(hole, grown[0], grown[1], len(hole), PUPIL_INSET_PX)


def _inner(boundary: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """Per boundary point: None where it lies on the image border (a cut), else whether it lies inside the
    boundary's convex hull (as an int8: -1 border, 0 on the hull, 1 inside)."""
    if len(boundary) < MIN_POINTS:
        return None
    height, width = shape
    x, y = boundary[:, 0], boundary[:, 1]
    border = (x <= 0) | (x >= width - 1) | (y <= 0) | (y >= height - 1)
    return np.where(border, -1, np.where(_on_hull(boundary), 0, 1)).astype(np.int8)


def _pupil_from_notches(boundary: np.ndarray, inner: np.ndarray | None, limbus: FittedEllipse) -> FittedEllipse | None:
    """A pupil open onto a lid cut shows as notches in the outer boundary, inside its convex hull: the pupil is
    fitted there with the limbus' shape (one circle, one gaze), if enough of it shows and it lies inside."""
    if inner is None:
        return None
    inside = inner == 1
    if inside.sum() < 4 * MIN_POINTS:
        return None
    fit = _Shaped(((limbus.x, limbus.y), (2 * limbus.semi_major, 2 * limbus.semi_minor), limbus.angle_deg))
    grown = _grown(boundary, _consensus(boundary, inside, fit, 3), inside, fit)
    if grown is None:
        return None
    pupil = _fitted(boundary, grown[0], grown[1], len(boundary), PUPIL_INSET_PX)
    off_centre = math.hypot(pupil.x - limbus.x, pupil.y - limbus.y)
    if grown[1].sum() < 4 * MIN_POINTS or pupil.semi_major + off_centre > 0.9 * limbus.semi_major:
        return None  # too little of it, or not inside the iris: a lid's notch, not a pupil
    return pupil


def _steep(outline: np.ndarray, reach: int) -> np.ndarray:
    """Where a closed outline runs within SIDE_DEG of vertical (its direction over `reach` points each way)."""
    tangent = np.roll(outline, -reach, axis=0) - np.roll(outline, reach, axis=0)
    return np.degrees(np.arctan2(np.abs(tangent[:, 0]), np.abs(tangent[:, 1]))) < SIDE_DEG


def _fit_limbus(
    outlines: list[np.ndarray], boundary: np.ndarray, inner: np.ndarray | None, pupil: FittedEllipse | None
) -> FittedEllipse | None:
    if inner is None:
        return None
    usable = inner == 0
    reach = max(3, len(boundary) // 60)
    steep = np.concatenate([_steep(outline, min(reach, max(1, len(outline) // 4))) for outline in outlines])
    sides = usable & steep if (usable & steep).sum() >= MIN_POINTS else usable
    if sides.sum() < MIN_POINTS:
        return None
    grown = _grown(boundary, _consensus(boundary, sides, _free, 5), usable, _free)
    if grown is not None and (pupil is None or _coverage(boundary[grown[1]], grown[0]) >= MIN_COVERAGE):
        return _fitted(boundary, grown[0], grown[1], len(boundary))
    if pupil is None:
        return None
    fit = _Shaped(((pupil.x, pupil.y), (2 * pupil.semi_major, 2 * pupil.semi_minor), pupil.angle_deg))
    shaped = _grown(boundary, _consensus(boundary, sides, fit, 3), usable, fit)
    return None if shaped is None else _fitted(boundary, shaped[0], shaped[1], len(boundary))


def _plausible(limbus: FittedEllipse | None, shape: tuple[int, int]) -> FittedEllipse | None:
    """`limbus` where it could be one: centred in the image, no wider than its longer side, not flatter than
    MIN_AXIS_RATIO. An eye image holds the whole eye; a larger or far-off ellipse is a fit to something else
    (and would cost its area to measure)."""
    height, width = shape
    if limbus is None or 2.0 * limbus.semi_major > max(height, width):
        return None
    if limbus.semi_minor < MIN_AXIS_RATIO * limbus.semi_major:
        return None
    return limbus if 0.0 <= limbus.x < width and 0.0 <= limbus.y < height else None


# ---------------------------------------------------------------- measures


def _orientation(binary: np.ndarray) -> float | None:
    moments = cv2.moments(binary, binaryImage=True)
    if moments["m00"] == 0:
        return None
    angle = 0.5 * math.degrees(math.atan2(2.0 * moments["mu11"], moments["mu20"] - moments["mu02"]))
    return round(angle if angle > -90.0 else angle + 180.0, 2)


def _filled(shape: tuple[int, int], ellipse: FittedEllipse, origin: tuple[int, int]) -> np.ndarray:
    """The pixels of `ellipse` on a canvas whose pixel (0, 0) is the mask's pixel `origin` (x, y)."""
    canvas = np.zeros(shape, np.uint8)
    center = (round((ellipse.x - origin[0]) * 16), round((ellipse.y - origin[1]) * 16))  # 1/16 px: shift 4
    axes = (round(ellipse.semi_major * 16), round(ellipse.semi_minor * 16))
    cv2.ellipse(canvas, center, axes, ellipse.angle_deg, 0, 360, 1, -1, cv2.LINE_8, 4)
    return canvas.astype(bool)


def visible_fraction(
    mask: np.ndarray, limbus: FittedEllipse, pupil: FittedEllipse | None, band_deg: float
) -> float | None:
    """The share of the annulus between `pupil` (if any) and `limbus` that the mask covers, counting only its
    part within `band_deg` of the horizontal axis through the limbus' centre (90: all of it). Parts beyond the
    image's border count as not visible."""
    reach = math.ceil(limbus.semi_major) + 2  # a square around the limbus holds it at any angle
    left, top = math.floor(limbus.x) - reach, math.floor(limbus.y) - reach
    side = 2 * reach + 2
    annulus = _filled((side, side), limbus, (left, top))
    if pupil is not None:
        annulus &= ~_filled((side, side), pupil, (left, top))
    if band_deg < 90.0:
        dy, dx = np.ogrid[top : top + side, left : left + side]
        annulus &= np.abs(dy - limbus.y) <= np.abs(dx - limbus.x) * math.tan(math.radians(band_deg))
    total = int(annulus.sum())
    if total == 0:
        return None
    height, width = mask.shape
    window = np.zeros((side, side), bool)  # the mask under the square; beyond the image: not visible
    y0, y1, x0, x1 = max(top, 0), min(top + side, height), max(left, 0), min(left + side, width)
    if y0 < y1 and x0 < x1:
        window[y0 - top : y1 - top, x0 - left : x1 - left] = mask[y0:y1, x0:x1].astype(bool)
    return round(float((window & annulus).sum()) / total, 4)
