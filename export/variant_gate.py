"""Reduced-precision variants, each gated against the same torch fp32 reference as the fp32 graphs.

`bf16` and `bf16-encoder` run the fp32 graphs on OpenVINO's CPU plugin and are gated where this machine has
native bf16. `fp16-encoder` is a graph of its own (`fp16_encoder`), gated here on onnxruntime's CPU provider
(no GPU at export; a Hugging Face Space build has none either) and again by the server on the GPU against
fp32 there, over the calibration images this module stores in the model directory. Each variant is
recorded with its figures and verdict; a rejected one is never served; the fp32 graphs stay the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vreyesam.export import fidelity, fp16_encoder
from vreyesam.export.artifacts import artifact
from vreyesam.runtime import surface
from vreyesam.runtime.gate_report import FidelityReport
from vreyesam.runtime.manifest import CALIBRATION, ENCODER, ENCODER_FP16, MANIFEST_NAME, Manifest, Variant
from vreyesam.runtime.vocabulary import CPU_VARIANTS, Precision

# The start-up self-test of a variant catches a broken engine; its fidelity is proven by the gate.
VARIANT_GOLDEN_TOLERANCE = {"logits_relative_error": 5e-2, "scores_max_abs_error": 5e-2, "final_mask_iou": 0.95}
FP16_ENCODER: Precision = "fp16-encoder"


def _gate(
    staging: Path, name: Precision, outcomes: list[fidelity.ReferenceOutcome], sample: surface.GoldenSample
) -> Variant:
    encoder, decoder = surface.REDUCED_GRAPHS[name]
    tolerance = dict(VARIANT_GOLDEN_TOLERANCE)
    choice = surface.Choice(name=name, encoder=encoder, decoder=decoder, golden_tolerance=tolerance)
    try:
        files = surface.read_model_files(
            staging, surface.servable_manifest(staging, allow_random_weights=True, trust=None)
        )
        segmenter = surface.build_segmenter(files, [surface.CPU_PROVIDER], choice, surface.LoadOptions(device="cpu"))
    except surface.ModelLoadError as exc:
        report = FidelityReport(passed=False, problems=(f"{name} failed to load: {exc}",))
        return Variant(encoder, decoder, passed=False, fidelity=report, golden_tolerance={})
    results = [fidelity.measure_image(segmenter, outcome) for outcome in outcomes]
    problems = fidelity.failures(results, fidelity.REDUCED_PRECISION)
    try:
        surface.run_golden(segmenter, sample, tolerance)
    except surface.GoldenMismatch as exc:
        problems.append(str(exc))
    report = fidelity.report(results, fidelity.REDUCED_PRECISION, problems, segmenter.engines)
    return Variant(encoder=encoder, decoder=decoder, passed=report.passed, fidelity=report, golden_tolerance=tolerance)


def _with_fp16_files(staging: Path, manifest: Manifest, images: list[tuple[str, np.ndarray]]) -> Manifest:
    """The fp16 encoder and the calibration images written and pinned in the staging manifest."""
    fp16_encoder.build(staging / manifest.artifacts[ENCODER].file, staging / "encoder-fp16.onnx")
    with (staging / "calibration.npz").open("wb") as handle:
        np.savez_compressed(handle, **{f"image_{index:02d}": image for index, (_, image) in enumerate(images)})
    artifacts = {
        **manifest.artifacts,
        ENCODER_FP16: artifact(staging / "encoder-fp16.onnx"),
        CALIBRATION: artifact(staging / "calibration.npz"),
    }
    staged = dataclasses.replace(manifest, artifacts=artifacts)
    (staging / MANIFEST_NAME).write_text(staged.to_json(), encoding="utf-8")
    return staged


def _summary(name: str, variant: Variant) -> str:
    worst = variant.fidelity.worst
    figures = (
        f"logits relative error {worst.logits_relative_error:.2e}, confident-pixel IoU {worst.confident_pixel_iou:.4f}"
        if worst
        else "; ".join(variant.fidelity.problems)
    )
    return f"variant {name}: {'passed' if variant.passed else 'rejected'} ({figures})"


def gate_variants(
    staging: Path,
    manifest: Manifest,
    outcomes: list[fidelity.ReferenceOutcome],
    sample: surface.GoldenSample,
    images: list[tuple[str, np.ndarray]],
    progress: Callable[[str], None],
) -> Manifest:
    """The manifest with each variant this machine can gate, its files added, and its verdict."""
    manifest = _with_fp16_files(staging, manifest, images)
    names: list[Precision] = [FP16_ENCODER]
    if surface.bf16_supported():
        names = [*CPU_VARIANTS, *names]
    else:
        progress("bf16 variants not gated: this machine lacks OpenVINO or a CPU with native bf16")
    gated = {}
    for name in names:
        progress(f"gating variant {name}")
        gated[name] = _gate(staging, name, outcomes, sample)
        progress(_summary(name, gated[name]))
    return dataclasses.replace(manifest, variants=gated)
