"""Drawing a synthetic eye from its `EyeParams`: sclera, iris texture, pupil, skin, lids, lashes, glints, noise.

`render` is a pure function of the parameters (their `texture_seed` seeds every random detail), so an
image can be re-drawn exactly; its mask comes from the same fills as the picture.
"""

from __future__ import annotations

import math

import numpy as np

from vreyesam.runtime.media.opencv import cv2
from vreyesam.runtime.tools.eye_geometry import (
    ONE,
    RGB,
    SHIFT,
    Ellipse,
    EyeParams,
    Point,
    eye_opening,
    fill_ellipse,
    fill_polygon,
    lid_curve,
    to_fixed,
)


def render(params: EyeParams) -> tuple[np.ndarray, np.ndarray]:
    """Draw the eye: (HxWx3 uint8 RGB image, HxW bool iris mask)."""
    shape = (params.height, params.width)
    iris, pupil = fill_ellipse(shape, params.iris), fill_ellipse(shape, params.pupil)
    opening = fill_polygon(shape, eye_opening(params))
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
    starts = to_fixed(params.pupil.point(t))
    ends = to_fixed(params.iris.point(t + rng.uniform(-0.08, 0.08, t.size)))
    for start, end, gain in zip(starts, ends, rng.uniform(0.6, 1.4, t.size), strict=True):
        color = tuple(float(c) for c in np.clip(base * gain, 0, 255))
        cv2.line(layer, tuple(map(int, start)), tuple(map(int, end)), color, 1, cv2.LINE_8, SHIFT)
    _draw_ellipse_outline(layer, params.pupil.scaled(1.6), base * 1.25, 2)
    _draw_ellipse_outline(layer, params.iris, base * 0.5, max(2, round(params.iris.axes[0] * 0.1)))
    return cv2.GaussianBlur(layer, (0, 0), 1.0)


def _draw_ellipse_outline(image: np.ndarray, ellipse: Ellipse, color: np.ndarray, thickness: int) -> None:
    points = to_fixed(ellipse.point(np.linspace(0, 2 * math.pi, 90, endpoint=False)))
    rgb = tuple(float(c) for c in np.clip(color, 0, 255))
    cv2.polylines(image, [points], True, rgb, thickness, cv2.LINE_8, SHIFT)


def _curve_layer(params: EyeParams, curve: np.ndarray, thickness: int, sigma: float) -> np.ndarray:
    """HxW float32 0..1: a blurred stroke along a curve, for shadows and skin folds."""
    layer = np.zeros((params.height, params.width), np.float32)
    cv2.polylines(layer, [to_fixed(curve)], False, 1.0, thickness, cv2.LINE_8, SHIFT)
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
        curve = to_fixed(lid_curve(params.corners, control))
        color = tuple(float(c) for c in skin * gain)
        cv2.polylines(image, [curve], False, color, thickness, cv2.LINE_8, SHIFT)


def _draw_lashes(image: np.ndarray, params: EyeParams, rng: np.random.Generator) -> None:
    """Curved lashes growing outwards from both lids, longer and denser on the upper one."""
    color = (float(params.skin[0] * 0.15),) * 3 if params.nir else (30.0, 24.0, 22.0)
    for control, count, length, up in (
        (params.upper_lid, params.eyelashes, 0.12, -1.0),
        (params.lower_lid, params.eyelashes // 4, 0.05, 1.0),
    ):
        for lash in _lash_paths(params, control, count, length * params.eye_width, up, rng):
            thickness = 2 if rng.random() < 0.2 else 1
            cv2.polylines(image, [to_fixed(lash)], False, color, thickness, cv2.LINE_8, SHIFT)


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
        center = tuple(int(v) for v in to_fixed(np.array([x, y])))
        cv2.circle(image, center, int(radius * ONE), (255.0, 255.0, 255.0), -1, cv2.LINE_8, SHIFT)


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
