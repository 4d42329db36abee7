"""Image -> the preprocessing graph's input, reproducing the reference's first resize without torch.

The reference resizes twice:
1. fit the RGB image inside fit_size x fit_size with cv2.resize (INTER_LINEAR on uint8; small images are
   upscaled) — the VREyeSAM `read_image` step; prompts and masks live in this "fitted" frame. Done here;
2. SAM2Transforms: /255, resize to image_size x image_size with torchvision's antialiased bilinear filter on
   float data, normalise. Done by the preprocessing graph on the execution provider
   (export/preprocess_graph.py), which takes the fitted uint8 image.
"""

from __future__ import annotations

import numpy as np

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
