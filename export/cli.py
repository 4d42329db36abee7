"""`vreyesam export`: weights -> verified ONNX model directory."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from vreyesam.export import signing, weights
from vreyesam.export.builder import ExportError, ExportRequest, export_model
from vreyesam.runtime import surface


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="model directory to write (required unless --new-key)")
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
    parser.add_argument(
        "--skip-variants", action="store_true", help="gate and record no reduced-precision (bf16) variant; fp32 only"
    )
    parser.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt the ONNX graphs (AES-256-GCM) with the key in --key-file",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help="secret file with a 32-byte key as hex or base64 (create one: vreyesam export --new-key FILE)",
    )
    parser.add_argument("--new-key", type=Path, metavar="FILE", help="write a new random key to FILE (0600) and exit")
    parser.add_argument(
        "--sign-key",
        type=Path,
        metavar="FILE",
        help="sign the model directory with this ECDSA private key (a secret file, PEM): model.sig inside it",
    )
    parser.add_argument(
        "--new-signing-key",
        type=Path,
        metavar="PREFIX",
        help="write a new ECDSA P-256 key pair to PREFIX.key (0600) and PREFIX.pub, and exit",
    )


def _new_key(path: Path) -> int:
    if path.exists():
        print(f"vreyesam export: error: {path.name} already exists", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(surface.new_key_text() + "\n")
    print(f"wrote a new model key to {path}")
    return 0


def _new_signing_key(prefix: Path) -> int:
    private, public = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    try:
        signing.new_key_pair(private, public)
    except signing.SigningError as exc:
        print(f"vreyesam export: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote a new signing key to {private} (keep it secret) and its public key to {public}")
    return 0


def _encryption_key(args: argparse.Namespace) -> bytes | None:
    if not args.encrypt:
        return None
    if args.key_file is None:
        raise ExportError("--encrypt needs --key-file FILE")
    try:
        return surface.parse_key(args.key_file.read_text(encoding="utf-8"))
    except OSError:
        raise ExportError("the key file cannot be read") from None
    except surface.ModelKeyError as exc:
        raise ExportError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    # The export's own progress at INFO; the libraries it drives (onnxscript's optimizer, onnxruntime's
    # transformer tools) report every rewrite at INFO, thousands of lines: only their warnings are shown.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("vreyesam").setLevel(logging.INFO)
    if args.new_key is not None:
        return _new_key(args.new_key)
    if args.new_signing_key is not None:
        return _new_signing_key(args.new_signing_key)
    try:
        if args.out is None:
            raise ExportError("--out DIR is required")
        key = _encryption_key(args)
        if args.sign_key is not None:
            signing.check_private_key(args.sign_key)  # before minutes of exporting
    except (ExportError, signing.SigningError) as exc:
        print(f"vreyesam export: error: {exc}", file=sys.stderr)
        return 1
    request = ExportRequest(
        out_dir=args.out,
        weights_source=args.weights,
        sha256=args.sha256,
        random_weights=args.random_weights,
        seed=args.seed,
        calibration_dir=args.calibration,
        force=args.force,
        encryption_key=key,
        reduced_variants=not args.skip_variants,
    )
    started = time.perf_counter()
    try:
        manifest = export_model(request)
    except ExportError as exc:
        print(f"vreyesam export: error: {exc}", file=sys.stderr)
        return 1
    if args.sign_key is not None:
        try:
            signature = signing.sign_directory(args.out, args.sign_key)
        except (signing.SigningError, OSError) as exc:
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(f"vreyesam export: error: the model directory could not be signed: {message}", file=sys.stderr)
            return 1
        print(f"signed the model directory: {signature.name}")
    worst = manifest.fidelity.worst
    figures = (
        f"final mask IoU >= {worst.final_mask_iou:.4f}, logits relative error <= {worst.logits_relative_error:.1e}"
        if worst is not None
        else "no figures"
    )
    print(
        f"exported {manifest.model_name} {manifest.model_version} to {args.out} in "
        f"{time.perf_counter() - started:.1f} s; fidelity: {figures}"
    )
    for name, variant in manifest.variants.items():
        print(f"variant {name}: {'passed its gate' if variant.passed else 'rejected by its gate, not served'}")
    return 0
