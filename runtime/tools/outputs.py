"""One image's results as `vreyesam predict` writes them: OUT/<folder>/<stem>.png for each output kind.

The PNG bytes are the HTTP API's (`media.render`); every file is written atomically. `segment_file` is the
whole per-image work short of writing (decode, segment, render, the summary row), the same locally and on
a cluster's actors; `write_pngs` is the writing. cv2-importing modules are imported inside the functions,
after the command has set OpenCV's limits (see tools/predict.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vreyesam.runtime.media.decode import DEFAULT_LIMITS, ImageInputError, read_image_file
from vreyesam.runtime.settings import DecodeLimits
from vreyesam.runtime.tools.inputs import InputFile
from vreyesam.runtime.tools.summary import FAILED, OK, Row, summary_row
from vreyesam.runtime.vocabulary import OutputKind, output_folder

if TYPE_CHECKING:
    from vreyesam.runtime.model.segmenter import Prediction, PredictOptions, Segmenter

# What every run writes per image, and the overlay written with --overlay.
KINDS: tuple[OutputKind, ...] = ("mask", "probability", "uncertainty")
OVERLAY: OutputKind = "overlay"


def predict_file(
    segmenter: Segmenter, path: Path, options: PredictOptions, limits: DecodeLimits = DEFAULT_LIMITS
) -> tuple[np.ndarray, Prediction]:
    """Decode an image file (judged by its bytes, within `limits`) and segment it: (HxWx3 RGB, Prediction).

    Raises ImageInputError when the file is not an acceptable image, OSError when it cannot be read.
    """
    image = read_image_file(path, limits)
    return image, segmenter.predict(image, options)


def output_pngs(prediction: Prediction, image: np.ndarray | None = None) -> dict[OutputKind, bytes]:
    """PNG bytes per output kind (KINDS, plus OVERLAY when the RGB `image` is given)."""
    from vreyesam.runtime.media import render  # imports cv2: see the module docstring

    kinds = KINDS if image is None else (*KINDS, OVERLAY)
    blank = np.zeros((1, 1, 3), np.uint8)
    return {kind: render.output_png(kind, prediction, blank if image is None else image) for kind in kinds}


def output_path(out_dir: Path, kind: OutputKind, stem: str) -> Path:
    return out_dir / output_folder(kind) / f"{stem}.png"


@dataclass(frozen=True)
class Segmented:
    """One input's result: its summary row and, unless it failed, its PNGs and the seconds they took."""

    row: Row
    pngs: dict[OutputKind, bytes] = field(default_factory=dict)
    seconds: float = 0.0


def segment_file(
    segmenter: Segmenter, item: InputFile, options: PredictOptions, limits: DecodeLimits, overlay: bool = False
) -> Segmented:
    """Decode, segment and render one input; a file that cannot be read or decoded is a failed row."""
    start = time.perf_counter()
    try:
        image, prediction = predict_file(segmenter, item.path, options, limits)
    except ImageInputError as exc:
        return Segmented(summary_row(item, FAILED, exc.message))
    except OSError as exc:
        return Segmented(summary_row(item, FAILED, f"cannot read the file ({exc.strerror or exc})"))
    pngs = output_pngs(prediction, image if overlay else None)
    return Segmented(summary_row(item, OK, prediction=prediction), pngs, time.perf_counter() - start)


def write_pngs(out_dir: Path, stem: str, pngs: dict[OutputKind, bytes]) -> list[Path]:
    """Write OUT/<kind>/<stem>.png for every rendered kind, each atomically; returns the paths written."""
    from vreyesam.runtime.media.files import write_bytes_atomic

    written = []
    for kind, data in pngs.items():
        path = output_path(out_dir, kind, stem)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
        written.append(path)
    return written
