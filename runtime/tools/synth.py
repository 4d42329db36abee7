"""Synthetic eye images with ground-truth iris masks, for tests, demos and the exporter's calibration set.

Every number that shapes a picture lives in an `EyeParams`, so an image can be re-drawn exactly and its mask
checked against the geometry. VR headset cameras look at the eye off-axis, so the iris and pupil are rotated
ellipses; the eyelids are quadratic Bezier curves between the two eye corners.

The ground-truth mask is what a VRBiom-style annotator draws: inside the iris ellipse, outside the pupil
ellipse, and inside the eye opening between the eyelids. Glints and eyelashes drawn over the iris stay in
the mask: annotators outline the iris region as a whole, not each specular spot or lash that crosses it.

`vreyesam synth --out DIR -n N` writes DIR/images/eye_0000.png (RGB) and DIR/masks/eye_0000.png (0/255).
The geometry is in `eye_geometry`, the drawing in `eye_drawing`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from vreyesam.runtime.media.files import write_bytes_atomic
from vreyesam.runtime.media.render import encode_png, mask_png
from vreyesam.runtime.tools.eye_drawing import render
from vreyesam.runtime.tools.eye_geometry import sample_params

MODES = ("nir", "rgb", "mixed")
MIN_SIDE = 64  # below this the eye is a few pixels wide and the geometry degenerates


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
