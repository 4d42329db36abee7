"""The `vreyesam` command: one entry point over both halves of the project.

Each subcommand lives in its own module, imported only when that subcommand runs, so the serving image
(no torch) can run `serve` and `predict` while `export` stays available where torch is installed. Before
importing it, the libraries the subcommand needs are looked up (found, not imported: OpenCV must not load
before its limits are set): a missing one is one line naming the extra to install, and exit code 2,
never an import traceback. `--ray` (or `--ray-address`) picks a subcommand's cluster variant: another module,
which needs the `ray` extra; without the flag nothing imports Ray.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass

MISSING_DEPENDENCY = 2


@dataclass(frozen=True)
class Subcommand:
    module: str  # defines configure(parser) and run(args) -> int
    help: str
    extras: str  # the extras that install what it needs, for the error message
    needs: tuple[str, ...]  # top-level modules it imports
    on_ray: Subcommand | None = None  # the variant that --ray selects


RAY_FLAGS = ("--ray", "--ray-address")
_SERVING = ("numpy", "cv2", "PIL", "onnxruntime")
SUBCOMMANDS: dict[str, Subcommand] = {
    "export": Subcommand(
        "vreyesam.export.cli",
        "export the model to a verified ONNX model directory (needs torch)",
        "export",
        ("torch", "sam2", "hydra", "iopath", "onnx", "onnxscript", "onnxruntime", "cryptography"),
    ),
    "serve": Subcommand(
        "vreyesam.runtime.tools.serve",
        "serve predictions over HTTP from a model directory",
        "cpu,serve",
        (*_SERVING, "fastapi", "starlette", "uvicorn", "python_multipart", "cryptography"),
        Subcommand(
            "vreyesam.runtime.cluster.serve",
            "serve the same API on a Ray Serve cluster",
            "cpu,serve,ray",
            (*_SERVING, "fastapi", "starlette", "uvicorn", "python_multipart", "cryptography", "ray"),
        ),
    ),
    "predict": Subcommand(
        "vreyesam.runtime.tools.predict",
        "segment image files and folders into PNG masks",
        "cpu,serve",
        (*_SERVING, "tqdm", "cryptography"),
        Subcommand(
            "vreyesam.runtime.cluster.predict",
            "segment image files and folders on a Ray cluster (Ray Data)",
            "cpu,serve,ray",
            (*_SERVING, "tqdm", "cryptography", "fastapi", "ray", "pyarrow"),
        ),
    ),
    "evaluate": Subcommand(
        "vreyesam.runtime.tools.evaluate",
        "pixel-level precision, recall, F1 and IoU against ground truth",
        "cpu",
        ("numpy", "cv2"),
    ),
    "geometry": Subcommand(
        "vreyesam.runtime.tools.geometry",
        "the iris geometry and quality verdict of mask files made elsewhere, as JSON lines",
        "cpu",
        ("numpy", "cv2", "PIL"),
    ),
    "synth": Subcommand(
        "vreyesam.runtime.tools.synth",
        "write synthetic eye images with ground-truth iris masks",
        "cpu",
        ("numpy", "cv2", "PIL"),
    ),
    "space": Subcommand(
        "vreyesam.runtime.tools.space",
        "write a folder ready to push to a Hugging Face Space (weights encrypted in its image)",
        "",
        (),  # the standard library only: it copies files from a source checkout
    ),
}


def missing_module(needs: Sequence[str]) -> str | None:
    """The first of `needs` that is not installed, else None."""
    for name in needs:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):
            return name
    return None


def resolve(name: str, argv: Sequence[str]) -> Subcommand:
    """The subcommand `name` as `argv` asks for it: its cluster variant when a Ray flag is given."""
    command = SUBCOMMANDS[name]
    asks_for_ray = any(arg.split("=", 1)[0] in RAY_FLAGS for arg in argv)
    return command.on_ray if asks_for_ray and command.on_ray is not None else command


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, str | None]:
    """The parser, and the missing module of the chosen subcommand (then its module is not imported)."""
    parser = argparse.ArgumentParser(prog="vreyesam", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    missing = None
    for name in SUBCOMMANDS:
        command = resolve(name, argv) if name == chosen else SUBCOMMANDS[name]
        sub = subparsers.add_parser(name, help=SUBCOMMANDS[name].help, description=command.help)
        if name != chosen:
            continue
        missing = missing_module(command.needs)
        if missing is None:
            # Only the chosen subcommand's module is imported: `export` needs torch, the rest must not.
            module = importlib.import_module(command.module)
            module.configure(sub)
            sub.set_defaults(handler=module.run)
    return parser, missing


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, missing = build_parser(args_list)
    if missing is not None:
        chosen = next(arg for arg in args_list if not arg.startswith("-"))
        extras = resolve(chosen, args_list).extras
        print(
            f"vreyesam {chosen}: error: the Python package '{missing}' is missing; "
            f"install the extras it needs: pip install 'vreyesam[{extras}]'",
            file=sys.stderr,
        )
        return MISSING_DEPENDENCY
    args = parser.parse_args(args_list)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
