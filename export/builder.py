"""Weights -> verified model directory, written atomically.

Steps: resolve and pin the weights, build SAM2 Hiera-S, export both graphs, fold them, record a golden
sample from torch, gate the ONNX model against torch on the calibration images, then move the finished
directory into place. Any failure leaves nothing behind.
"""

from __future__ import annotations

import logging
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
from onnxscript import optimizer

from vreyesam.export import fidelity, graphs, model, preprocess_graph, procedure_graph, variant_gate, weights
from vreyesam.export.artifacts import artifact
from vreyesam.export.reference import TorchReference
from vreyesam.runtime import surface
from vreyesam.runtime.gate_report import FidelityReport, GateThresholds
from vreyesam.runtime.manifest import (
    DECODER,
    ENCODER,
    GOLDEN,
    GRAPH_ROLES,
    GRAPHS,
    MANIFEST_NAME,
    PREPROCESS,
    PROCEDURE,
    PROCEDURE_PARALLEL,
    SCHEMA_VERSION,
    Artifact,
    Manifest,
    Preprocessing,
    ProcedureDefaults,
    WeightsSource,
    sha256_hex,
)
from vreyesam.runtime.vocabulary import IMAGE_SUFFIXES

log = logging.getLogger("vreyesam.export")

MODEL_NAME = "vreyesam-sam2-hiera-s"
OPSET = 17
GOLDEN_POINTS = 4
GOLDEN_TOLERANCE = {"logits_relative_error": 1e-2, "scores_max_abs_error": 1e-2, "final_mask_iou": 0.99}
CALIBRATION_SEED = 20251127
# Built-in calibration set: (width, height, mode) of synthetic eye images, VRBiom size first.
CALIBRATION_SHAPES = ((400, 300, "nir"), (400, 300, "rgb"), (640, 480, "nir"), (300, 400, "rgb"))


class ExportError(Exception):
    """The export cannot complete; nothing was written. The message is one safe line."""


@dataclass(frozen=True)
class ExportRequest:
    out_dir: Path
    weights_source: str = weights.DEFAULT_SOURCE
    sha256: str | None = None
    random_weights: bool = False
    seed: int = 0
    calibration_dir: Path | None = None
    force: bool = False
    encryption_key: bytes | None = field(default=None, repr=False)
    thresholds: GateThresholds = field(default_factory=GateThresholds)
    reduced_variants: bool = True  # gate the bf16 variants too (where this machine can run them)


def _load_model(request: ExportRequest) -> tuple[torch.nn.Module, WeightsSource]:
    if request.random_weights:
        source = WeightsSource(
            kind="random",
            id=f"random:seed={request.seed}",
            sha256=None,
            random_weights=True,
            seed=request.seed,
        )
        return model.build_random(request.seed), source
    weights_file = weights.fetch_weights(request.weights_source, weights.normalize_sha256(request.sha256))
    state = weights.load_state(weights_file.path)
    sam = model.build_sam2_hiera_s()
    model.load_state_dict_strict(sam, state)
    source = WeightsSource(
        kind=weights_file.kind, id=weights_file.source_id, sha256=weights_file.sha256, random_weights=False
    )
    return sam, source


def _fold(path: Path) -> None:
    """Fold constant subgraphs, notably the `If` nodes tracing leaves in the positional embedding:
    data-independent branches that onnxruntime would otherwise resolve at load time."""
    folded = optimizer.optimize(onnx.load(str(path)))
    if any(node.op_type == "If" for node in folded.graph.node):
        raise ExportError(f"{path.name} still holds data-dependent If nodes after folding")
    onnx.save(folded, str(path))


def _tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    packages = ("torch", "sam2", "onnx", "onnxruntime", "onnxscript", "openvino", "numpy", "opencv-python-headless")
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _golden_sample(reference: TorchReference, prep: Preprocessing, defaults: ProcedureDefaults) -> surface.GoldenSample:
    """A small image through torch and the reference procedure: what the server checks itself against."""
    _, image, _ = surface.synthetic_eyes(seed=CALIBRATION_SEED, n=1, width=128, height=96, mode="nir")[0]
    fitted = surface.fit_image(image, prep.fit_size)
    fitted_hw = (fitted.shape[0], fitted.shape[1])
    points = surface.sample_points(fitted_hw, GOLDEN_POINTS, seed=0)
    logits, scores = reference.decode(
        reference.features(fitted), surface.to_model_frame(points, fitted_hw, prep.image_size)
    )
    masks = reference.masks(logits, fitted_hw, defaults.mask_logit_threshold)
    fitted_binary = reference.binary(masks, scores, defaults.threshold).numpy().astype(np.uint8)
    binary = cv2.resize(fitted_binary, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return surface.GoldenSample(
        image=image, points=points, low_res_logits=logits.numpy(), scores=scores.numpy(), binary=binary
    )


def _host_graphs(staging: Path, reference: TorchReference, images: list[tuple[str, np.ndarray]]) -> dict[str, Path]:
    """The preprocessing and procedure graphs, the first checked against torch's transforms."""
    prep, defaults = Preprocessing(), ProcedureDefaults()
    paths = {
        PREPROCESS: staging / "preprocess.onnx",
        PROCEDURE: staging / "procedure.onnx",
        PROCEDURE_PARALLEL: staging / "procedure-parallel.onnx",
    }
    preprocess = preprocess_graph.build(prep)
    try:
        preprocess_graph.check(preprocess, reference, [surface.fit_image(image, prep.fit_size) for _, image in images])
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    onnx.save(preprocess, str(paths[PREPROCESS]))
    onnx.save(procedure_graph.build(prep, defaults), str(paths[PROCEDURE]))
    onnx.save(procedure_graph.build(prep, defaults, parallel=True), str(paths[PROCEDURE_PARALLEL]))
    return paths


def calibration_images(calibration_dir: Path | None) -> list[tuple[str, np.ndarray]]:
    images = []
    for index, (width, height, mode) in enumerate(CALIBRATION_SHAPES):
        name, image, _ = surface.synthetic_eyes(CALIBRATION_SEED + index, n=1, width=width, height=height, mode=mode)[0]
        images.append((f"synthetic/{name}-{width}x{height}-{mode}", image))
    if calibration_dir is not None:
        files = sorted(p for p in calibration_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ExportError("--calibration folder holds no images")
        for path in files:
            try:
                images.append((f"calibration/{path.name}", surface.read_image_file(path)))
            except surface.ImageInputError as exc:
                raise ExportError(f"calibration image {path.name}: {exc.message}") from None
    return images


def _manifest(source: WeightsSource, artifacts: dict[str, Artifact], fidelity_report: FidelityReport) -> Manifest:
    version = f"random-seed{source.seed}" if source.random_weights else f"sha256-{(source.sha256 or '')[:12]}"
    return Manifest(
        schema_version=SCHEMA_VERSION,
        model_name=MODEL_NAME,
        model_version=version,
        sam2_config=model.SAM2_CONFIG,
        source=source,
        opset=OPSET,
        precision="fp32",
        artifacts=artifacts,
        preprocessing=Preprocessing(),
        procedure=ProcedureDefaults(),
        fidelity=fidelity_report,
        golden_tolerance=dict(GOLDEN_TOLERANCE),
        tools=_tool_versions(),
    )


def _encrypt(staging: Path, manifest: Manifest, key: bytes) -> Manifest:
    """Replace each graph by its AES-GCM ciphertext (`*.onnx.enc`); the golden sample stays readable."""
    artifacts = dict(manifest.artifacts)
    for role in (role for role in GRAPH_ROLES if role in artifacts):
        plain = staging / artifacts[role].file
        sealed = plain.with_name(plain.name + ".enc")
        sealed.write_bytes(surface.encrypt(plain.read_bytes(), key, role))
        plain.unlink()
        artifacts[role] = replace(
            artifacts[role], file=sealed.name, sha256=sha256_hex(sealed), bytes=sealed.stat().st_size
        )
    manifest = replace(manifest, artifacts=artifacts, encrypted=True)
    (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def _install(staging: Path, out_dir: Path, force: bool) -> None:
    """Move the finished staging directory into place; an existing one is replaced only with force."""
    if out_dir.exists():
        if not force:
            raise ExportError(f"{out_dir.name} already exists; pass --force to replace it")
        retired = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        out_dir.rename(retired)
        staging.rename(out_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(out_dir)


def export_model(request: ExportRequest, progress: Callable[[str], None] = log.info) -> Manifest:
    out_dir = request.out_dir
    if out_dir.exists() and not request.force:
        raise ExportError(f"{out_dir.name} already exists; pass --force to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        sam, source = _load_model(request)
    except model.WeightsError as exc:
        raise ExportError(str(exc)) from None
    prep = Preprocessing()
    reference = TorchReference(sam, prep)
    images = calibration_images(request.calibration_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        progress("exporting the ONNX graphs")
        exported = graphs.export_graphs(sam, staging, OPSET)
        for path in (exported.encoder, exported.decoder):
            _fold(path)
        paths = {**_host_graphs(staging, reference, images), ENCODER: exported.encoder, DECODER: exported.decoder}
        progress("recording the golden sample")
        sample = _golden_sample(reference, prep, ProcedureDefaults())
        surface.save_golden(staging / "golden.npz", sample)
        artifacts = {role: artifact(paths[role]) for role in (*GRAPHS, PROCEDURE_PARALLEL)}
        artifacts[GOLDEN] = artifact(staging / "golden.npz")
        pending = _manifest(source, artifacts, FidelityReport(passed=False, problems=("not gated yet",)))
        (staging / MANIFEST_NAME).write_text(pending.to_json(), encoding="utf-8")
        try:
            options = surface.LoadOptions(device="cpu", precision="fp32", allow_random_weights=True)
            segmenter = surface.load_segmenter(staging, options)
        except surface.ModelLoadError as exc:
            raise ExportError(f"exported model failed to load: {exc}") from None
        progress(f"fidelity gate on {len(images)} calibration images")
        outcomes = [fidelity.reference_outcome(name, image, segmenter, reference) for name, image in images]
        results = [fidelity.measure_image(segmenter, outcome) for outcome in outcomes]
        problems = fidelity.failures(results, request.thresholds)
        report = fidelity.report(results, request.thresholds, problems, segmenter.engines)
        manifest = _manifest(source, artifacts, report)
        if problems:
            raise ExportError("fidelity gate failed: " + "; ".join(problems))
        if request.reduced_variants:
            manifest = variant_gate.gate_variants(staging, manifest, outcomes, sample, images, progress)
        if request.encryption_key is not None:
            progress("encrypting the ONNX graphs")
            manifest = _encrypt(staging, manifest, request.encryption_key)
            try:
                options = surface.LoadOptions(device="cpu", allow_random_weights=True, model_key=request.encryption_key)
                surface.load_segmenter(staging, options)
            except surface.ModelLoadError as exc:
                raise ExportError(f"encrypted model failed to load: {exc}") from None
        (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        staging.chmod(0o755)
        _install(staging, out_dir, request.force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
