"""The flags every command that loads a model shares: which model, on which device, in which precision."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vreyesam.runtime.vocabulary import DEVICES, PRECISION_REQUESTS


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """--model, --device, --precision and --allow-random-weights; unset flags leave the environment's value."""
    parser.add_argument("--model", type=Path, help="model directory (env VREYESAM_MODEL_DIR)")
    parser.add_argument("--device", choices=DEVICES, help="execution provider (env VREYESAM_DEVICE, default auto)")
    parser.add_argument(
        "--precision",
        choices=PRECISION_REQUESTS,
        help="fp32 or a reduced variant the export passed (env VREYESAM_PRECISION, default auto)",
    )
    parser.add_argument(
        "--allow-random-weights",
        action="store_const",
        const=True,  # not given: None, so VREYESAM_ALLOW_RANDOM_WEIGHTS decides
        help="serve a model exported with random weights, a demo (env VREYESAM_ALLOW_RANDOM_WEIGHTS)",
    )


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model flags as `Settings.with_overrides` keywords (None where not given)."""
    return {
        "model_dir": args.model,
        "device": args.device,
        "precision": args.precision,
        "allow_random_weights": args.allow_random_weights,
    }


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    """--ray and --ray-address: vreyesam/cli.py sends a command that has either to its cluster variant."""
    parser.add_argument(
        "--ray",
        action="store_true",
        help="run on a Ray cluster (needs the ray extra; see `--ray --help` for its options)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="the Ray cluster to join (env RAY_ADDRESS; neither: a private cluster on this machine); implies --ray",
    )
