"""`vreyesam geometry`: the iris block and quality verdict of masks made elsewhere (an annotated data set,
another segmenter), measured as every answer measures the model's own masks (`media.quality.assess`).

One JSON object per mask, in input order, to `--json OUT.jsonl` (written atomically) or standard output:
`{"mask", "image", "iris", "quality"}`, or `{"mask", "error"}` for a mask that cannot be measured (then the
exit code is 1). With `--images DIR`, each mask's image (the file of the same stem in DIR) adds the
image-based measures; without it they are null and the gate judges the mask alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from vreyesam.runtime.media.decode import ImageInputError, decode_image
from vreyesam.runtime.media.files import write_bytes_atomic
from vreyesam.runtime.media.opencv import OpenCvLimitsError, require_limits
from vreyesam.runtime.media.quality import assess, iris_block
from vreyesam.runtime.settings import Settings, SettingsError, load_settings
from vreyesam.runtime.tools.evaluate import DEFAULT_THRESHOLD, mask_from_bytes, threshold_argument
from vreyesam.runtime.tools.inputs import InputFile, UsageError, find_inputs
from vreyesam.runtime.vocabulary import IMAGE_SUFFIXES

Record = dict[str, Any]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("masks", nargs="+", type=Path, metavar="MASK", help="mask files or folders of them")
    parser.add_argument(
        "--images", type=Path, help="folder of the masks' images (same file stem): adds sharpness and specular"
    )
    parser.add_argument("--json", type=Path, help="write JSON lines here (default: standard output)")
    parser.add_argument("--recursive", action="store_true", help="also take masks from subfolders")
    parser.add_argument(
        "--threshold",
        type=threshold_argument,
        default=DEFAULT_THRESHOLD,
        help=f"grey level above which a mask pixel is iris (default {DEFAULT_THRESHOLD})",
    )


def images_by_stem(folder: Path) -> dict[str, Path]:
    """The image files of a folder by stem (the first by name where several share one)."""
    if not folder.is_dir():
        raise UsageError(f"--images {folder} is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            found.setdefault(path.stem, path)
    return found


def measure(item: InputFile, image_path: Path | None, settings: Settings, threshold: int) -> Record:
    """The record of one mask (and its image, when there is one)."""
    record: Record = {"mask": item.relative.as_posix()}
    try:
        mask = mask_from_bytes(item.path.read_bytes(), threshold)
    except OSError as exc:
        return {**record, "error": f"cannot read the file ({exc.strerror or exc})"}
    if mask is None:
        return {**record, "error": "not an image"}
    image: np.ndarray | None = None
    if image_path is not None:
        try:
            image = decode_image(image_path.read_bytes(), settings.decode_limits)
        except ImageInputError as exc:
            return {**record, "error": f"its image {image_path.name}: {exc.message}"}
        except OSError as exc:
            return {**record, "error": f"cannot read its image {image_path.name} ({exc.strerror or exc})"}
        if image.shape[:2] != mask.shape:
            (h, w), (mh, mw) = image.shape[:2], mask.shape
            return {**record, "error": f"its image {image_path.name} is {w}x{h}, the mask {mw}x{mh}"}
    geometry, measures, quality = assess(mask, image, settings.quality_gate)
    return {
        **record,
        "image": None if image_path is None else image_path.name,
        "iris": iris_block(geometry, measures),
        "quality": asdict(quality),
    }


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        require_limits(settings.decode_limits)
        masks = find_inputs(args.masks, args.recursive, exclude=args.json)
        images = images_by_stem(args.images) if args.images is not None else {}
    except (SettingsError, OpenCvLimitsError, UsageError) as exc:
        print(f"vreyesam geometry: error: {exc}", file=sys.stderr)
        return 2
    if not masks:
        print("vreyesam geometry: error: no mask files found in the inputs", file=sys.stderr)
        return 2
    records = [measure(item, images.get(item.stem), settings, args.threshold) for item in masks]
    if args.images is not None:
        for record in records:  # a mask without its image is measured alone, and says so
            if "error" not in record and record["image"] is None:
                record["note"] = "no image of this stem in --images"
    text = "".join(json.dumps(record) + "\n" for record in records)
    if args.json is None:
        sys.stdout.write(text)
    else:
        try:
            write_bytes_atomic(args.json, text.encode("utf-8"))
        except OSError as exc:
            print(f"vreyesam geometry: error: cannot write {args.json} ({exc.strerror or exc})", file=sys.stderr)
            return 1
    failed = [record for record in records if "error" in record]
    for record in failed:
        print(f"{record['mask']}: {record['error']}", file=sys.stderr)
    return 1 if failed else 0
