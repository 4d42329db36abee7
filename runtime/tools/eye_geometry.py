"""The geometry of a synthetic eye: every number that shapes one picture, and how those numbers are drawn.

VR headset cameras look at the eye off-axis, so the iris and pupil are rotated ellipses; the eyelids are
quadratic Bezier curves between the two eye corners. `sample_params` draws a plausible `EyeParams` from a
seeded generator; `eye_drawing.render` turns one into a picture and its ground-truth mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from vreyesam.runtime.media.opencv import cv2

Point = tuple[float, float]
RGB = tuple[float, float, float]

# cv2 drawing in fixed point: 1/16 px precision, so masks follow the float geometry, not a rounded one.
# cv2 also fills the pixels its outline touches, so a filled shape reaches about half a pixel beyond the
# analytic boundary. Masks and picture come from the same fills, so they agree with each other.
SHIFT = 4
ONE = 1 << SHIFT
_LID_SAMPLES = 64

# Palettes for RGB images: (R, G, B) before a random brightness jitter.
_SKIN_RGB = ((224, 172, 138), (198, 134, 102), (160, 110, 80), (110, 75, 55), (236, 190, 160))
_IRIS_RGB = ((105, 70, 40), (70, 45, 28), (125, 105, 60), (85, 115, 80), (80, 115, 155), (115, 125, 135))


@dataclass(frozen=True)
class Ellipse:
    """A rotated ellipse in pixel coordinates (pixel centres at integers, as in OpenCV)."""

    center: Point  # (x, y) px
    axes: Point  # half-axes along the ellipse's own x and y, px
    angle: float  # degrees, clockwise on screen (y points down), as cv2.ellipse

    def point(self, t: np.ndarray) -> np.ndarray:
        """Points at parameter angles t (radians, shape N): N x 2 float (x, y)."""
        rot = math.radians(self.angle)
        u, v = self.axes[0] * np.cos(t), self.axes[1] * np.sin(t)
        x = self.center[0] + u * math.cos(rot) - v * math.sin(rot)
        y = self.center[1] + u * math.sin(rot) + v * math.cos(rot)
        return np.stack([x, y], axis=-1)

    def half_extent(self) -> Point:
        """Half width and half height of the axis-aligned bounding box."""
        rot = math.radians(self.angle)
        a, b = self.axes
        return math.hypot(a * math.cos(rot), b * math.sin(rot)), math.hypot(a * math.sin(rot), b * math.cos(rot))

    def scaled(self, factor: float) -> Ellipse:
        """The same ellipse with both axes multiplied by factor."""
        return replace(self, axes=(self.axes[0] * factor, self.axes[1] * factor))


@dataclass(frozen=True)
class EyeParams:
    """Everything that shapes one synthetic eye image; `render` is a pure function of it."""

    width: int
    height: int
    nir: bool  # near-infrared look: grayscale replicated to 3 channels, LED-ring glints
    iris: Ellipse  # off-axis gaze foreshortens the iris circle into this ellipse
    pupil: Ellipse  # lies inside the iris
    corners: tuple[Point, Point]  # eye corners (left, right), where the eyelids meet
    upper_lid: Point  # Bezier control point of the upper eyelid (above the corners)
    lower_lid: Point  # Bezier control point of the lower eyelid (below the corners)
    eyelashes: int  # lashes on the upper lid; the lower lid gets a quarter as many
    glints: tuple[tuple[float, float, float], ...]  # specular spots (x, y, radius) px
    noise_sigma: float  # Gaussian sensor noise, grey levels
    blur_sigma: float  # optical blur, px
    vignette: float  # brightness lost towards the image corners, 0..1
    skin: RGB
    sclera: RGB
    iris_color: RGB
    pupil_color: RGB
    texture_seed: int  # seeds iris streaks, lash placement and noise, so render stays deterministic

    @property
    def eye_width(self) -> float:
        """Distance between the eye corners, px: the scale of every eye-relative size."""
        (x0, y0), (x1, y1) = self.corners
        return math.hypot(x1 - x0, y1 - y0)


# ---------------------------------------------------------------- geometry


def lid_curve(corners: tuple[Point, Point], control: Point, samples: int = _LID_SAMPLES) -> np.ndarray:
    """A quadratic Bezier eyelid from the left to the right corner: samples x 2 float (x, y)."""
    t = np.linspace(0.0, 1.0, samples)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (corners[0], control, corners[1]))
    return (1 - t) ** 2 * p0 + 2 * t * (1 - t) * p1 + t**2 * p2


def eye_opening(params: EyeParams) -> np.ndarray:
    """The eye opening's outline: upper lid left to right, then lower lid right to left; K x 2 float."""
    upper = lid_curve(params.corners, params.upper_lid)
    lower = lid_curve(params.corners, params.lower_lid)[::-1]
    return np.concatenate([upper, lower[1:-1]])


def open_eyelids(params: EyeParams, margin: float = 4.0) -> EyeParams:
    """The same eye with the lids pulled clear of the iris, so the mask is the whole iris ring.

    The corners move to 3 iris half-widths either side of the iris centre; a parabola through them stays
    above 8/9 of its apex height over the iris, so an apex 1.5 iris half-heights away clears the iris.
    """
    (cx, cy), (half_w, half_h) = params.iris.center, params.iris.half_extent()
    reach = 1.5 * half_h + margin
    corners = ((cx - 3 * half_w, cy), (cx + 3 * half_w, cy))
    # A symmetric quadratic Bezier reaches half its control point's offset at t = 1/2.
    return replace(params, corners=corners, upper_lid=(cx, cy - 2 * reach), lower_lid=(cx, cy + 2 * reach))


def with_openness(params: EyeParams, openness: float) -> EyeParams:
    """The same eye with its lids brought towards the line between the corners: 1 leaves them where they are,
    0 closes the eye (each lid's Bezier control point moves to the corners' midpoint by this factor)."""
    (x0, y0), (x1, y1) = params.corners
    mid = ((x0 + x1) / 2, (y0 + y1) / 2)

    def towards(control: Point) -> Point:
        return (mid[0] + openness * (control[0] - mid[0]), mid[1] + openness * (control[1] - mid[1]))

    return replace(params, upper_lid=towards(params.upper_lid), lower_lid=towards(params.lower_lid))


def true_visible_fraction(params: EyeParams, band_deg: float = 90.0) -> float:
    """The share of the iris annulus (iris minus pupil) the eye's opening shows, within `band_deg` of the
    horizontal axis through the iris centre: the generator's own truth, from its own shapes."""
    shape = (params.height, params.width)
    annulus = fill_ellipse(shape, params.iris) & ~fill_ellipse(shape, params.pupil)
    if band_deg < 90.0:
        rows, columns = np.mgrid[0 : params.height, 0 : params.width]
        dy, dx = rows - params.iris.center[1], columns - params.iris.center[0]
        annulus &= np.abs(dy) <= np.abs(dx) * math.tan(math.radians(band_deg))
    visible = annulus & fill_polygon(shape, eye_opening(params))
    return float(visible.sum()) / max(int(annulus.sum()), 1)


def to_fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates (... x 2) as cv2 fixed-point int32 for drawing with shift=SHIFT."""
    return np.round(np.asarray(points) * ONE).astype(np.int32)


def fill_ellipse(shape: tuple[int, int], ellipse: Ellipse) -> np.ndarray:
    """HxW bool: the pixels cv2 fills for the ellipse (see `SHIFT` on the half-pixel edge)."""
    canvas = np.zeros(shape, np.uint8)
    center = tuple(int(v) for v in to_fixed(np.array(ellipse.center)))
    axes = tuple(int(v) for v in to_fixed(np.array(ellipse.axes)))
    cv2.ellipse(canvas, center, axes, ellipse.angle, 0, 360, 1, -1, cv2.LINE_8, SHIFT)
    return canvas.astype(bool)


def fill_polygon(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """HxW bool: the pixels cv2 fills for the polygon (K x 2 float)."""
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [to_fixed(polygon)], 1, cv2.LINE_8, SHIFT)
    return canvas.astype(bool)


# ---------------------------------------------------------------- sampling


def sample_params(rng: np.random.Generator, width: int = 400, height: int = 300, nir: bool | None = None) -> EyeParams:
    """Draw a plausible off-axis eye; nir=None picks NIR or RGB at random."""
    if nir is None:
        nir = bool(rng.random() < 0.5)
    corners, eye_w = _sample_corners(rng, width, height)
    iris = _sample_iris(rng, corners, eye_w, width, height)
    upper_lid, lower_lid = _sample_lids(rng, corners, iris, eye_w)
    skin, sclera, iris_color, pupil_color = _sample_colors(rng, nir)
    return EyeParams(
        width=width,
        height=height,
        nir=nir,
        iris=iris,
        pupil=_sample_pupil(rng, iris),
        corners=corners,
        upper_lid=upper_lid,
        lower_lid=lower_lid,
        eyelashes=int(rng.integers(25, 70)),
        glints=_sample_glints(rng, iris, nir),
        noise_sigma=float(rng.uniform(1.5, 6.0)),
        blur_sigma=float(rng.uniform(0.5, 1.2)),
        vignette=float(rng.uniform(0.25, 0.5) if nir else rng.uniform(0.0, 0.15)),
        skin=skin,
        sclera=sclera,
        iris_color=iris_color,
        pupil_color=pupil_color,
        texture_seed=int(rng.integers(2**31)),
    )


def _sample_corners(rng: np.random.Generator, width: int, height: int) -> tuple[tuple[Point, Point], float]:
    """Eye corners near the image centre and the eye width; the eye spans about 3/4 of a 4:3 frame."""
    eye_w = min(width, height * 4 / 3) * rng.uniform(0.62, 0.82)
    ex = width / 2 + rng.uniform(-0.05, 0.05) * width
    ey = height / 2 + rng.uniform(-0.06, 0.06) * height
    tilt = rng.uniform(-0.04, 0.04, size=2) * eye_w
    return ((ex - eye_w / 2, ey + tilt[0]), (ex + eye_w / 2, ey + tilt[1])), float(eye_w)


def _sample_iris(
    rng: np.random.Generator, corners: tuple[Point, Point], eye_w: float, width: int, height: int
) -> Ellipse:
    """An iris circle (radius about a fifth of the eye width) foreshortened by a 10-40 degree gaze."""
    radius = eye_w * rng.uniform(0.17, 0.22)
    gaze = math.radians(rng.uniform(10.0, 40.0))
    ex, ey = (corners[0][0] + corners[1][0]) / 2, (corners[0][1] + corners[1][1]) / 2
    center = (ex + rng.uniform(-0.18, 0.18) * eye_w, ey + rng.uniform(-0.06, 0.04) * eye_w)
    # Headset cameras sit below the eye, so the short axis stays near vertical.
    iris = Ellipse(center, (radius, radius * math.cos(gaze)), float(rng.uniform(-35.0, 35.0)))
    return _inside_frame(iris, width, height)


def _inside_frame(ellipse: Ellipse, width: int, height: int, margin: float = 2.0) -> Ellipse:
    """Shift the ellipse so its bounding box lies inside the image: the whole iris stays annotatable."""
    half_w, half_h = ellipse.half_extent()
    x = min(max(ellipse.center[0], half_w + margin), width - 1 - half_w - margin)
    y = min(max(ellipse.center[1], half_h + margin), height - 1 - half_h - margin)
    return replace(ellipse, center=(x, y))


def _sample_pupil(rng: np.random.Generator, iris: Ellipse) -> Ellipse:
    """A pupil 28-50 % of the iris, slightly off-centre; small enough to stay inside the iris."""
    radius = iris.axes[0]
    offset = rng.uniform(-0.06, 0.06, size=2) * radius
    center = (iris.center[0] + offset[0], iris.center[1] + offset[1])
    return replace(iris.scaled(rng.uniform(0.28, 0.5)), center=center)


def _sample_lids(
    rng: np.random.Generator, corners: tuple[Point, Point], iris: Ellipse, eye_w: float
) -> tuple[Point, Point]:
    """Bezier control points of both lids; the apexes often cut into the top and bottom of the iris."""
    mid_x, mid_y = (corners[0][0] + corners[1][0]) / 2, (corners[0][1] + corners[1][1]) / 2
    half_h = iris.half_extent()[1]
    upper_apex = min(iris.center[1] - half_h * rng.uniform(0.5, 1.1), mid_y - 0.08 * eye_w)
    lower_apex = max(iris.center[1] + half_h * rng.uniform(0.75, 1.3), mid_y + 0.08 * eye_w)
    # The apex of a quadratic Bezier sits halfway between the corners' line and the control point.
    upper = (mid_x + rng.uniform(-0.1, 0.1) * eye_w, 2 * upper_apex - mid_y)
    lower = (mid_x + rng.uniform(-0.1, 0.1) * eye_w, 2 * lower_apex - mid_y)
    return upper, lower


def _sample_colors(rng: np.random.Generator, nir: bool) -> tuple[RGB, RGB, RGB, RGB]:
    """Skin, sclera, iris and pupil colours; in NIR the iris looks mid-grey whatever its visible colour."""
    if nir:
        skin = rng.uniform(135, 200)
        levels = (skin, min(skin + rng.uniform(5, 30), 235.0), rng.uniform(65, 130), rng.uniform(8, 30))
        return tuple(_grey(level) for level in levels)  # type: ignore[return-value]
    skin_rgb = _jitter(_SKIN_RGB[rng.integers(len(_SKIN_RGB))], rng.uniform(0.9, 1.1))
    sclera = _jitter((232, 225, 218), rng.uniform(0.92, 1.04))
    iris_rgb = _jitter(_IRIS_RGB[rng.integers(len(_IRIS_RGB))], rng.uniform(0.85, 1.15))
    return skin_rgb, sclera, iris_rgb, _jitter((14, 12, 12), rng.uniform(0.8, 1.3))


def _grey(level: float) -> RGB:
    return (float(level),) * 3  # type: ignore[return-value]


def _jitter(color: tuple[int, int, int], factor: float) -> RGB:
    return tuple(float(min(c * factor, 255.0)) for c in color)  # type: ignore[return-value]


def _sample_glints(rng: np.random.Generator, iris: Ellipse, nir: bool) -> tuple[tuple[float, float, float], ...]:
    """NIR headsets light the eye with an LED ring (a ring of small glints); RGB shows one or two windows."""
    radius = iris.axes[0]
    if nir:
        count = int(rng.integers(4, 9))
        ring = iris.scaled(rng.uniform(0.45, 0.9))
        t = rng.uniform(0, 2 * math.pi) + np.arange(count) * 2 * math.pi / count
        points = ring.point(t + rng.uniform(-0.15, 0.15, count))
        sizes = rng.uniform(1.2, 2.6, count)
    else:
        count = int(rng.integers(1, 3))
        offsets = rng.uniform((-0.6, -0.6), (0.6, 0.3), size=(count, 2)) * radius
        points = np.asarray(iris.center) + offsets
        sizes = rng.uniform(2.0, 5.0, count)
    return tuple((float(x), float(y), float(r)) for (x, y), r in zip(points, sizes, strict=True))
