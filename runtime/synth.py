"""Synthetic eye images with ground-truth iris masks, for tests, demos and the exporter's calibration set.

Every number that shapes a picture lives in an `EyeParams`, so an image can be re-drawn exactly and its mask
checked against the geometry. VR headset cameras look at the eye off-axis, so the iris and pupil are rotated
ellipses; the eyelids are quadratic Bezier curves between the two eye corners.

The ground-truth mask is what a VRBiom-style annotator draws: inside the iris ellipse, outside the pupil
ellipse, and inside the eye opening between the eyelids. Glints and eyelashes drawn over the iris stay in
the mask: annotators outline the iris region as a whole, not each specular spot or lash that crosses it.

`vreyesam synth --out DIR -n N` writes DIR/images/eye_0000.png (RGB) and DIR/masks/eye_0000.png (0/255).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from vreyesam.runtime.files import write_bytes_atomic
from vreyesam.runtime.render import encode_png, mask_png

Point = tuple[float, float]
RGB = tuple[float, float, float]

MODES = ("nir", "rgb", "mixed")
MIN_SIDE = 64  # below this the eye is a few pixels wide and the geometry degenerates

# cv2 drawing in fixed point: 1/16 px precision, so masks follow the float geometry, not a rounded one.
# cv2 also fills the pixels its outline touches, so a filled shape reaches about half a pixel beyond the
# analytic boundary. Masks and picture come from the same fills, so they agree with each other.
_SHIFT = 4
_ONE = 1 << _SHIFT
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


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates (... x 2) as cv2 fixed-point int32 for drawing with shift=_SHIFT."""
    return np.round(np.asarray(points) * _ONE).astype(np.int32)


def _fill_ellipse(shape: tuple[int, int], ellipse: Ellipse) -> np.ndarray:
    """HxW bool: the pixels cv2 fills for the ellipse (see `_SHIFT` on the half-pixel edge)."""
    canvas = np.zeros(shape, np.uint8)
    center = tuple(int(v) for v in _fixed(np.array(ellipse.center)))
    axes = tuple(int(v) for v in _fixed(np.array(ellipse.axes)))
    cv2.ellipse(canvas, center, axes, ellipse.angle, 0, 360, 1, -1, cv2.LINE_8, _SHIFT)
    return canvas.astype(bool)


def _fill_polygon(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """HxW bool: the pixels cv2 fills for the polygon (K x 2 float)."""
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [_fixed(polygon)], 1, cv2.LINE_8, _SHIFT)
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


# ---------------------------------------------------------------- rendering


def render(params: EyeParams) -> tuple[np.ndarray, np.ndarray]:
    """Draw the eye: (HxWx3 uint8 RGB image, HxW bool iris mask)."""
    shape = (params.height, params.width)
    iris, pupil = _fill_ellipse(shape, params.iris), _fill_ellipse(shape, params.pupil)
    opening = _fill_polygon(shape, eye_opening(params))
    rng = np.random.default_rng(params.texture_seed)
    eye = _eyeball(params, iris, pupil, rng)
    image = _blend(_skin(params, opening, rng), eye, _soft(opening, 0.8))
    _draw_lid_margins(image, params)
    _draw_lashes(image, params, rng)
    _draw_glints(image, params)
    # Glints and lashes are drawn over the iris but stay in the mask (see the module docstring).
    return _finish(image, params, rng), iris & ~pupil & opening


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    """HxW bool -> HxW float32 alpha in 0..1 with blurred edges, for anti-aliased compositing."""
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)


def _blend(base: np.ndarray, top: np.ndarray | RGB, alpha: np.ndarray) -> np.ndarray:
    """HxWx3 float32: top over base with HxW alpha."""
    a = alpha[..., None]
    return base * (1 - a) + np.asarray(top, np.float32) * a


def _full(params: EyeParams, color: RGB) -> np.ndarray:
    """HxWx3 float32 filled with one colour."""
    return np.broadcast_to(np.asarray(color, np.float32), (params.height, params.width, 3)).copy()


def _eyeball(params: EyeParams, iris: np.ndarray, pupil: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 float32: shaded sclera, textured iris and the pupil, before the lids cut them."""
    xs = np.arange(params.width, dtype=np.float32)[None, :]
    (x0, _), (x1, _) = params.corners
    # The eyeball is a sphere: the sclera darkens towards the corners.
    across = (xs - (x0 + x1) / 2) / (params.eye_width / 2)
    sclera = _full(params, params.sclera) * (1 - 0.3 * np.clip(across, -1, 1) ** 2)[..., None]
    eye = _blend(sclera, _iris_texture(params, rng), _soft(iris, 0.7))
    eye = _blend(eye, params.pupil_color, _soft(pupil, 0.6))
    return eye * (1 - 0.35 * _lid_shadow(params))[..., None]


def _iris_texture(params: EyeParams, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 float32: radial streaks from pupil to limbus, a collarette and a dark limbal ring."""
    layer = _full(params, params.iris_color)
    base = np.asarray(params.iris_color, np.float32)
    t = rng.uniform(0, 2 * math.pi, 180)
    starts = _fixed(params.pupil.point(t))
    ends = _fixed(params.iris.point(t + rng.uniform(-0.08, 0.08, t.size)))
    for start, end, gain in zip(starts, ends, rng.uniform(0.6, 1.4, t.size), strict=True):
        color = tuple(float(c) for c in np.clip(base * gain, 0, 255))
        cv2.line(layer, tuple(map(int, start)), tuple(map(int, end)), color, 1, cv2.LINE_8, _SHIFT)
    _draw_ellipse_outline(layer, params.pupil.scaled(1.6), base * 1.25, 2)
    _draw_ellipse_outline(layer, params.iris, base * 0.5, max(2, round(params.iris.axes[0] * 0.1)))
    return cv2.GaussianBlur(layer, (0, 0), 1.0)


def _draw_ellipse_outline(image: np.ndarray, ellipse: Ellipse, color: np.ndarray, thickness: int) -> None:
    points = _fixed(ellipse.point(np.linspace(0, 2 * math.pi, 90, endpoint=False)))
    rgb = tuple(float(c) for c in np.clip(color, 0, 255))
    cv2.polylines(image, [points], True, rgb, thickness, cv2.LINE_8, _SHIFT)


def _curve_layer(params: EyeParams, curve: np.ndarray, thickness: int, sigma: float) -> np.ndarray:
    """HxW float32 0..1: a blurred stroke along a curve, for shadows and skin folds."""
    layer = np.zeros((params.height, params.width), np.float32)
    cv2.polylines(layer, [_fixed(curve)], False, 1.0, thickness, cv2.LINE_8, _SHIFT)
    return cv2.GaussianBlur(layer, (0, 0), sigma)


def _lid_shadow(params: EyeParams) -> np.ndarray:
    """HxW float32 0..1: the upper lid and its lashes shade the top of the eyeball."""
    upper = lid_curve(params.corners, params.upper_lid)
    return _curve_layer(params, upper, max(2, round(params.eye_width * 0.05)), params.eye_width * 0.03)


def _skin(params: EyeParams, opening: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 float32: skin with low-frequency blotches, a darker eye socket and the upper-lid crease."""
    blotches = cv2.resize(
        rng.normal(0, 0.05, (6, 8)).astype(np.float32),
        (params.width, params.height),
        interpolation=cv2.INTER_CUBIC,
    )
    socket = _soft(opening, params.eye_width * 0.15)
    fold = (params.upper_lid[0], params.upper_lid[1] - 0.25 * params.eye_width)
    corners = tuple((x + s * 0.05 * params.eye_width, y) for (x, y), s in zip(params.corners, (-1, 1), strict=True))
    crease = _curve_layer(params, lid_curve(corners, fold), 3, params.eye_width * 0.02)  # type: ignore[arg-type]
    shade = (1 + blotches) * (1 - 0.3 * socket) * (1 - 0.6 * np.clip(crease, 0, 1))
    return _full(params, params.skin) * shade[..., None]


def _draw_lid_margins(image: np.ndarray, params: EyeParams) -> None:
    """Dark upper lid line (lash roots) and a lighter, thinner lower lid line."""
    skin = np.asarray(params.skin, np.float32)
    for control, gain, thickness in ((params.upper_lid, 0.3, 3), (params.lower_lid, 0.7, 2)):
        curve = _fixed(lid_curve(params.corners, control))
        color = tuple(float(c) for c in skin * gain)
        cv2.polylines(image, [curve], False, color, thickness, cv2.LINE_8, _SHIFT)


def _draw_lashes(image: np.ndarray, params: EyeParams, rng: np.random.Generator) -> None:
    """Curved lashes growing outwards from both lids, longer and denser on the upper one."""
    color = (float(params.skin[0] * 0.15),) * 3 if params.nir else (30.0, 24.0, 22.0)
    for control, count, length, up in (
        (params.upper_lid, params.eyelashes, 0.12, -1.0),
        (params.lower_lid, params.eyelashes // 4, 0.05, 1.0),
    ):
        for lash in _lash_paths(params, control, count, length * params.eye_width, up, rng):
            thickness = 2 if rng.random() < 0.2 else 1
            cv2.polylines(image, [_fixed(lash)], False, color, thickness, cv2.LINE_8, _SHIFT)


def _lash_paths(
    params: EyeParams, control: Point, count: int, length: float, up: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """count lash polylines (3 x 2 float each) rooted on one lid, pointing away from the eye."""
    curve = lid_curve(params.corners, control, 200)
    mid_x = (params.corners[0][0] + params.corners[1][0]) / 2
    paths = []
    for index in rng.integers(15, 190, count):
        root = curve[index]
        outward = (root[0] - mid_x) / (params.eye_width / 2)  # lashes fan out towards the corners
        size = length * rng.uniform(0.6, 1.2)
        tip = root + size * np.array([0.9 * outward + rng.uniform(-0.3, 0.3), up])
        bend = (root + tip) / 2 + size * np.array([-0.1 * outward, 0.25 * up])  # lashes curl
        paths.append(np.stack([root, bend, tip]))
    return paths


def _draw_glints(image: np.ndarray, params: EyeParams) -> None:
    for x, y, radius in params.glints:
        center = tuple(int(v) for v in _fixed(np.array([x, y])))
        cv2.circle(image, center, int(radius * _ONE), (255.0, 255.0, 255.0), -1, cv2.LINE_8, _SHIFT)


def _finish(image: np.ndarray, params: EyeParams, rng: np.random.Generator) -> np.ndarray:
    """Vignette, optical blur, NIR greyscale and sensor noise; HxWx3 float32 -> HxWx3 uint8."""
    ys, xs = np.mgrid[0 : params.height, 0 : params.width].astype(np.float32)
    r2 = ((xs / params.width - 0.5) * 2) ** 2 + ((ys / params.height - 0.5) * 2) ** 2
    image = cv2.GaussianBlur(image * (1 - params.vignette * r2 / 2)[..., None], (0, 0), params.blur_sigma)
    if params.nir:
        # NIR cameras are monochrome: one luminance channel, replicated so every image is RGB.
        image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    channels = 1 if params.nir else 3
    image = image + rng.normal(0, params.noise_sigma, (params.height, params.width, channels))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- datasets


def generate(
    seed: int, n: int, width: int = 400, height: int = 300, mode: str = "mixed"
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """n (name, HxWx3 uint8 RGB image, HxW bool mask) triples, deterministic for a seed.

    Image i depends only on (seed, i), so generate(seed, 5)[:3] == generate(seed, 3).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    nir = {"nir": True, "rgb": False, "mixed": None}[mode]
    samples = []
    for index in range(n):
        params = sample_params(np.random.default_rng([seed, index]), width, height, nir)
        samples.append((f"eye_{index:04d}", *render(params)))
    return samples


def write_dataset(
    out_dir: Path, n: int, seed: int = 0, width: int = 400, height: int = 300, mode: str = "mixed"
) -> list[Path]:
    """Write out_dir/images/<name>.png and out_dir/masks/<name>.png (0/255); returns the image paths."""
    images_dir, masks_dir = out_dir / "images", out_dir / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image, mask in generate(seed, n, width, height, mode):
        write_bytes_atomic(images_dir / f"{name}.png", encode_png(image))
        write_bytes_atomic(masks_dir / f"{name}.png", mask_png(mask))
        written.append(images_dir / f"{name}.png")
    return written


# ---------------------------------------------------------------- command line


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (gets images/ and masks/)")
    parser.add_argument("-n", "--count", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--width", type=int, default=400, help="image width in pixels (default 400)")
    parser.add_argument("--height", type=int, default=300, help="image height in pixels (default 300)")
    parser.add_argument("--mode", choices=MODES, default="mixed", help="NIR-like, RGB or both (default mixed)")


def run(args: argparse.Namespace) -> int:
    if args.count < 1:
        print("error: -n must be at least 1", file=sys.stderr)
        return 2
    if min(args.width, args.height) < MIN_SIDE:
        print(f"error: --width and --height must be at least {MIN_SIDE}", file=sys.stderr)
        return 2
    try:
        written = write_dataset(args.out, args.count, args.seed, args.width, args.height, args.mode)
    except OSError as exc:
        print(f"error: cannot write to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} images and masks to {args.out}")
    return 0
