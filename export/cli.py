"""`vreyesam export`: weights -> verified ONNX model directory."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from vreyesam.export import weights
from vreyesam.export.builder import ExportError, ExportRequest, export_model


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument(
        "--weights",
        default=weights.DEFAULT_SOURCE,
        metavar="SOURCE",
        help=f"local file or hf://OWNER/REPO/FILE[@REVISION] (default: {weights.DEFAULT_SOURCE})",
    )
    parser.add_argument("--sha256", metavar="HEX", help="required sha256 of the weights file")
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="export SAM2 Hiera-S with seeded random weights (offline tests and demos; recorded as such)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights (default 0)")
    parser.add_argument("--calibration", type=Path, metavar="DIR", help="extra images for the fidelity gate")
    parser.add_argument("--force", action="store_true", help="replace an existing model directory")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    request = ExportRequest(
        out_dir=args.out,
        weights_source=args.weights,
        sha256=args.sha256,
        random_weights=args.random_weights,
        seed=args.seed,
        calibration_dir=args.calibration,
        force=args.force,
    )
    started = time.perf_counter()
    try:
        manifest = export_model(request)
    except ExportError as exc:
        print(f"vreyesam export: error: {exc}", file=sys.stderr)
        return 1
    worst = manifest.fidelity["worst"]
    print(
        f"exported {manifest.model_name} {manifest.model_version} to {args.out} in "
        f"{time.perf_counter() - started:.1f} s; fidelity: final mask IoU >= {worst['final_mask_iou']:.4f}, "
        f"logits relative error <= {worst['logits_relative_error']:.1e}"
    )
    return 0
