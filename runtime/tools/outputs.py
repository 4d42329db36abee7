"""One image's results as `vreyesam predict` writes them: OUT/<folder>/<stem>.png for each output kind.

`segment_file` is the whole per-image work short of writing, the same locally and on a cluster's actors:
the file's bytes, the one per-image function (`model.segment`), the summary row. `write_pngs` is the
writing; every file is written atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from vreyesam.runtime.media.decode import ImageInputError
from vreyesam.runtime.media.files import write_bytes_atomic
from vreyesam.runtime.model.segment import SegmentRequest, segment
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import DecodeLimits
from vreyesam.runtime.tools.inputs import InputFile
from vreyesam.runtime.tools.summary import FAILED, OK, Row, summary_row
from vreyesam.runtime.vocabulary import OutputKind, output_folder

# What every run writes per image, and the overlay written with --overlay.
KINDS: tuple[OutputKind, ...] = ("mask", "probability", "uncertainty")
OVERLAY: OutputKind = "overlay"


def file_request(
    overlay: bool, points: int | None = None, threshold: float | None = None, seed: int | None = None
) -> SegmentRequest:
    """What `vreyesam predict` asks of every image (None: the model's default): its three maps, and the
    overlay with --overlay."""
    kinds = (*KINDS, OVERLAY) if overlay else KINDS
    return SegmentRequest(points=points, threshold=threshold, seed=seed, outputs=kinds)


def output_path(out_dir: Path, kind: OutputKind, stem: str) -> Path:
    return out_dir / output_folder(kind) / f"{stem}.png"


@dataclass(frozen=True)
class Segmented:
    """One input's result: its summary row and, unless it failed, its PNGs and the seconds they took."""

    row: Row
    pngs: dict[OutputKind, bytes] = field(default_factory=dict)
    seconds: float = 0.0


def segment_file(segmenter: Segmenter, item: InputFile, request: SegmentRequest, limits: DecodeLimits) -> Segmented:
    """Read, decode, segment and render one input; a file that cannot be read or decoded is a failed row."""
    start = time.perf_counter()
    try:
        result = segment(segmenter, item.path.read_bytes(), request, limits)
    except ImageInputError as exc:
        return Segmented(summary_row(item, FAILED, exc.message))
    except OSError as exc:
        return Segmented(summary_row(item, FAILED, f"cannot read the file ({exc.strerror or exc})"))
    return Segmented(summary_row(item, OK, result=result), result.pngs, time.perf_counter() - start)


def write_pngs(out_dir: Path, stem: str, pngs: dict[OutputKind, bytes]) -> list[Path]:
    """Write OUT/<kind>/<stem>.png for every rendered kind, each atomically; returns the paths written."""
    written = []
    for kind, data in pngs.items():
        path = output_path(out_dir, kind, stem)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
        written.append(path)
    return written
