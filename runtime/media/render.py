"""Results -> bytes: PNG images (mask, probability, uncertainty colour map, overlay, iris) and COCO RLE.

Arrays here are RGB, like everything else in the runtime; only this module talks to cv2's BGR.
`rle_encode` / `rle_decode` reproduce pycocotools' compressed RLE (`pycocotools.mask.encode`) without
depending on it; tests compare the two when pycocotools is installed.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from vreyesam.runtime.media.opencv import cv2
from vreyesam.runtime.vocabulary import OutputKind, map_of


class ResultMaps(Protocol):
    """What rendering reads of a prediction (the model's `Prediction` has these), all HxW at the input size;
    a map the prediction was not asked for is None."""

    @property
    def binary(self) -> np.ndarray | None: ...  # bool

    @property
    def probability(self) -> np.ndarray | None: ...  # float32 in [0, 1]

    @property
    def uncertainty(self) -> np.ndarray | None: ...  # float32 in [0, 1]


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an HxW (gray), HxWx3 (RGB, not BGR) or HxWx4 (RGBA) uint8 array."""
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)  # cv2 writes BGR
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    elif array.ndim != 2:
        raise ValueError(f"encode_png needs HxW, HxWx3 or HxWx4, got shape {array.shape}")
    ok, buffer = cv2.imencode(".png", array)
    if not ok:
        raise ValueError("cv2 could not encode the PNG")
    return buffer.tobytes()


def mask_png(binary: np.ndarray) -> bytes:
    """PNG of an HxW boolean mask: 255 inside, 0 outside."""
    _require_2d(binary, "mask_png")
    return encode_png(binary.astype(bool).astype(np.uint8) * np.uint8(255))


def probability_png(prob: np.ndarray) -> bytes:
    """PNG of an HxW probability map in [0, 1] as uint8 gray."""
    return encode_png(_to_uint8(prob, "probability_png"))


def uncertainty_colormap(u: np.ndarray) -> np.ndarray:
    """HxW uncertainty in [0, 1] -> HxWx3 uint8 RGB, OpenCV's PLASMA colour map.

    cv2.applyColorMap returns BGR; it is turned to RGB so that `encode_png` writes the same PNG as the
    reference's `cv2.imwrite` of the BGR map.
    """
    bgr = cv2.applyColorMap(_to_uint8(u, "uncertainty_colormap"), cv2.COLORMAP_PLASMA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(
    image_rgb: np.ndarray,
    binary: np.ndarray,
    color: tuple[int, int, int] = (0, 255, 0),
    alpha: float = 0.45,
) -> np.ndarray:
    """HxWx3 uint8 RGB: `color` blended with weight `alpha` over the pixels where the HxW mask is True.

    Pixels outside the mask are left as they are (the reference demo darkened the whole image).
    Blending uses cv2.addWeighted, i.e. rounds to nearest and saturates.
    """
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"overlay needs an HxWx3 uint8 image, got {image_rgb.dtype} {image_rgb.shape}")
    _require_2d(binary, "overlay")
    if binary.shape != image_rgb.shape[:2]:
        raise ValueError(f"mask shape {binary.shape} does not match image shape {image_rgb.shape[:2]}")
    solid = np.empty_like(image_rgb)
    solid[:] = np.asarray(color, dtype=np.uint8)
    blended = cv2.addWeighted(image_rgb, 1.0 - alpha, solid, alpha, 0.0)
    return np.where(binary.astype(bool)[..., None], blended, image_rgb)


def iris_crop(image_rgb: np.ndarray, binary: np.ndarray) -> np.ndarray:
    """The iris cut out: HxWx4 uint8 RGBA of the mask's bounding box, the image where the mask is and
    transparent black elsewhere (ISO/IEC 39794-6's "cropped and masked"); 1x1 transparent for an empty mask."""
    _require_2d(binary, "iris_crop")
    if binary.shape != image_rgb.shape[:2]:
        raise ValueError(f"mask shape {binary.shape} does not match image shape {image_rgb.shape[:2]}")
    inside = binary.astype(bool)
    if not inside.any():
        return np.zeros((1, 1, 4), np.uint8)
    x, y, width, height = cv2.boundingRect(inside.astype(np.uint8))
    window = inside[y : y + height, x : x + width]
    crop = np.zeros((height, width, 4), np.uint8)
    crop[window, :3] = image_rgb[y : y + height, x : x + width][window]
    crop[window, 3] = 255
    return crop


def rle_encode(binary: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of an HxW mask: {"size": [h, w], "counts": str}, as pycocotools.mask.encode.

    The runs are taken in column-major (Fortran) order and alternate starting with a run of zeros
    (possibly empty); `counts` is pycocotools' string form of them (see `_runs_to_string`), decoded to
    str (it is ASCII) so that it can go straight into JSON.
    """
    _require_2d(binary, "rle_encode")
    height, width = binary.shape
    flat = binary.astype(bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds)
    if flat.size and flat[0]:
        runs = np.concatenate(([0], runs))  # the first run counts zeros
    return {"size": [int(height), int(width)], "counts": _runs_to_string(runs.astype(np.int64))}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """HxW bool mask from a COCO RLE dict; `counts` may be the compressed str/bytes or a list of runs."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    runs = _string_to_runs(counts) if isinstance(counts, bytes) else np.asarray(counts, dtype=np.int64)
    if (runs.size and runs.min() < 0) or int(runs.sum()) != height * width:
        raise ValueError(f"RLE runs do not cover a {height}x{width} mask")
    values = np.arange(runs.size) % 2 == 1  # runs alternate 0, 1, 0, ...
    return np.repeat(values, runs).reshape((height, width), order="F")


def _runs_to_string(runs: np.ndarray) -> str:
    """pycocotools' rleToString: LEB128-like, 5 bits per char (+0x20 = more follows) offset by 48.

    From the fourth run on, a run is stored as its difference to the run two before (the run of the
    same value), which keeps the numbers small; the last char of a number carries its sign in 0x10.
    Vectorised over all runs, one pass per char position (at most 7 for 32-bit differences).
    """
    x = runs.copy()
    x[3:] -= runs[1:-2]
    columns, lengths = [], np.zeros(x.size, dtype=np.int64)
    active = np.ones(x.size, dtype=bool)
    while active.any():
        c = x & 0x1F
        x >>= 5  # arithmetic shift: negative numbers tend to -1
        more = np.where(c & 0x10, x != -1, x != 0) & active
        columns.append((c | np.where(more, 0x20, 0)) + 48)
        lengths += active
        active = more
    chars = np.stack(columns, axis=1) if columns else np.zeros((0, 0), dtype=np.int64)
    keep = np.arange(chars.shape[1]) < lengths[:, None]
    return chars[keep].astype(np.uint8).tobytes().decode("ascii")


def _string_to_runs(s: bytes) -> np.ndarray:
    """Inverse of `_runs_to_string` (pycocotools' rleFrString): int64 runs."""
    c = np.frombuffer(s, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63 or c[-1] & 0x20:
        raise ValueError("malformed RLE counts string")
    last = (c & 0x20) == 0  # this char ends a number
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    number = np.cumsum(np.concatenate(([0], last[:-1])))  # which number each char belongs to
    position = np.arange(c.size) - starts[number]
    if position.max() > 11:
        raise ValueError("malformed RLE counts string")
    x = np.add.reduceat((c & 0x1F) << (5 * position), starts)
    negative = (c[last] & 0x10) != 0
    x[negative] |= np.left_shift(np.int64(-1), 5 * (position[last][negative] + 1))
    x[1::2] = np.cumsum(x[1::2])  # undo the differences to the run two before
    x[2::2] = np.cumsum(x[2::2])
    return x


def _to_uint8(values: np.ndarray, name: str) -> np.ndarray:
    """(values * 255).astype(uint8), truncating, exactly as the reference code converts maps.

    The clip to [0, 1] first changes nothing for in-range input (the reference clips too); it only
    keeps out-of-range values from the float -> uint8 cast, whose result for them is undefined.
    """
    _require_2d(values, name)
    return (np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)


def _require_2d(array: np.ndarray, name: str) -> None:
    if array.ndim != 2:
        raise ValueError(f"{name} needs an HxW array, got shape {array.shape}")


def output_png(kind: OutputKind, prediction: ResultMaps, image: np.ndarray) -> bytes:
    """One result as PNG bytes; the command line's files and the HTTP answers both come from here."""
    source = getattr(prediction, map_of(kind))
    if source is None:
        raise ValueError(f"the prediction holds no {map_of(kind)} map for the {kind} output")
    if kind == "mask":
        return mask_png(source)
    if kind == "probability":
        return probability_png(source)
    if kind == "uncertainty":
        return encode_png(uncertainty_colormap(source))
    if kind == "overlay":
        return encode_png(overlay(image, source))
    if kind == "iris":
        return encode_png(iris_crop(image, source))
    raise ValueError(f"unknown output kind {kind!r}")
