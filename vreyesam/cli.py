"""The `vreyesam` command: one entry point over both halves of the project.

Each subcommand lives in its own module, imported only when that subcommand runs, so the serving image
(no torch) can run `serve` and `predict` while `export` stays available where torch is installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help). Each module defines `configure(parser)` and `run(args) -> int`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "export": ("vreyesam.export.cli", "export the model to a verified ONNX model directory (needs torch)"),
    "serve": ("vreyesam.runtime.serve", "serve predictions over HTTP from a model directory"),
    "predict": ("vreyesam.runtime.batch", "segment image files and folders into PNG masks"),
    "evaluate": (
        "vreyesam.runtime.evaluate",
        "pixel-level precision, recall, F1 and IoU against ground truth",
    ),
    "synth": ("vreyesam.runtime.synth", "write synthetic eye images with ground-truth iris masks"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vreyesam", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            # Only the chosen subcommand's module is imported: `export` needs torch, the rest must not.
            module = importlib.import_module(module_name)
            module.configure(sub)
            sub.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
