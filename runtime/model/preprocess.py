"""Image -> encoder input, reproducing the reference without torch.

Two resizes, as the reference does them:
1. fit the RGB image inside fit_size x fit_size with cv2.resize (INTER_LINEAR on uint8; small images are
   upscaled) — the VREyeSAM `read_image` step; prompts and masks live in this "fitted" frame;
2. SAM2Transforms: /255, resize to image_size x image_size with torchvision's antialiased bilinear filter on
   float data, normalise. Pillow's float ("F" mode) BILINEAR resize is the same convolution and matches it
   to ~1e-6, where cv2.resize on uint8 does not (it neither antialiases nor keeps float precision).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from vreyesam.runtime.manifest import Preprocessing
from vreyesam.runtime.media.opencv import cv2


def fitted_size(height: int, width: int, fit_size: int) -> tuple[int, int]:
    """(height, width) of the fitted image: the reference's int() truncation of the scaled sides."""
    ratio = min(fit_size / width, fit_size / height)
    return max(1, int(height * ratio)), max(1, int(width * ratio))


def fit_image(image_rgb: np.ndarray, fit_size: int) -> np.ndarray:
    """HxWx3 uint8 -> hxwx3 uint8 with max(h/H, w/W) scaling so the image fits fit_size x fit_size."""
    height, width = image_rgb.shape[:2]
    out_h, out_w = fitted_size(height, width, fit_size)
    return cv2.resize(image_rgb, (out_w, out_h), interpolation=cv2.INTER_LINEAR)


def encoder_input(fitted_rgb: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """hxwx3 uint8 -> 3xSxS float32 normalised, S = prep.image_size (one image of the encoder batch)."""
    size = (prep.image_size, prep.image_size)
    planes = []
    for channel in range(3):
        plane = Image.fromarray(fitted_rgb[:, :, channel].astype(np.float32) / np.float32(255.0))  # mode "F"
        planes.append(np.asarray(plane.resize(size, Image.Resampling.BILINEAR), dtype=np.float32))
    tensor = np.stack(planes)
    mean = np.asarray(prep.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(prep.std, dtype=np.float32)[:, None, None]
    return (tensor - mean) / std
