"""Precision variants: which one is served, that an impossible request is refused, and that bf16 holds up."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.model_files import open_model_files
from tests.server_harness import serve_to_exit
from vreyesam.runtime.engines.onnxruntime_graph import OnnxRuntimeGraph, SessionConfig
from vreyesam.runtime.engines.openvino_graph import OpenVinoGraph, bf16_supported
from vreyesam.runtime.gate_report import FidelityReport, GateThresholds
from vreyesam.runtime.manifest import GRAPHS, MANIFEST_NAME, Manifest, Variant, read_manifest
from vreyesam.runtime.model import device_gate, variants
from vreyesam.runtime.model.artifacts import ModelLoadError
from vreyesam.runtime.model.loader import LoadOptions, load_segmenter
from vreyesam.runtime.model.segmenter import PredictOptions, Segmenter
from vreyesam.runtime.tools import synth
from vreyesam.runtime.vocabulary import CPU_VARIANTS, REDUCED_PRECISIONS

TOLERANCE = {"logits_relative_error": 0.05, "scores_max_abs_error": 0.05}


def _manifest(model_dir: Path, **verdicts: bool) -> Manifest:
    """The test model's manifest with variants whose gate verdicts are given (bf16=..., bf16_encoder=...)."""
    records = {
        name.replace("_", "-"): Variant(
            "bf16", "fp32" if name == "bf16_encoder" else "bf16", passed, FidelityReport(passed=passed), TOLERANCE
        )
        for name, passed in verdicts.items()
    }
    return dataclasses.replace(read_manifest(model_dir), variants=records)


def _choose(manifest: Manifest, requested: str, on_cpu: bool = True, bf16: bool = True) -> str:
    return variants.choose_variant(manifest, requested, on_cpu, lambda: bf16).name


def test_auto_takes_the_fastest_variant_that_passed(model_dir: Path) -> None:
    assert _choose(_manifest(model_dir, bf16=True, bf16_encoder=True), "auto") == "bf16"
    assert _choose(_manifest(model_dir, bf16=False, bf16_encoder=True), "auto") == "bf16-encoder"
    assert _choose(_manifest(model_dir, bf16=False, bf16_encoder=False), "auto") == "fp32"
    assert _choose(_manifest(model_dir), "auto") == "fp32"


def test_auto_stays_fp32_without_native_bf16_or_on_a_gpu(model_dir: Path) -> None:
    manifest = _manifest(model_dir, bf16=True, bf16_encoder=True)
    assert _choose(manifest, "auto", bf16=False) == "fp32"
    assert _choose(manifest, "auto", on_cpu=False) == "fp32"
    assert _choose(manifest, "fp32") == "fp32"


@pytest.mark.parametrize(
    ("requested", "on_cpu", "bf16", "message"),
    [
        ("bf16", True, True, "no such variant that passed its fidelity gate"),
        ("bf16-encoder", False, True, "runs on the CPU only"),
        ("bf16-encoder", True, False, "needs OpenVINO and a CPU with native bf16"),
        ("int4", True, True, "unknown precision"),
    ],
)
def test_explicit_request_that_cannot_be_met_is_an_error(
    model_dir: Path, requested: str, on_cpu: bool, bf16: bool, message: str
) -> None:
    manifest = _manifest(model_dir, bf16=False, bf16_encoder=True)
    with pytest.raises(variants.VariantUnavailable, match=message):
        _choose(manifest, requested, on_cpu=on_cpu, bf16=bf16)


def test_the_fp32_golden_tolerance_applies_to_fp32(model_dir: Path) -> None:
    manifest = _manifest(model_dir, bf16_encoder=True)
    assert variants.choose_variant(manifest, "fp32", True, lambda: True).golden_tolerance == manifest.golden_tolerance
    assert variants.choose_variant(manifest, "auto", True, lambda: True).golden_tolerance == TOLERANCE


@pytest.fixture(scope="module")
def gated_model(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test model with its gate's verdicts set: `bf16` rejected, `bf16-encoder` passed.

    The artifacts are links to the test model's files (they stay pinned); only the manifest, which the
    export writes after gating, is rewritten, so the rejected case exists on every machine.
    """
    target = tmp_path_factory.mktemp("gated") / "model"
    target.mkdir()
    for item in model_dir.iterdir():
        if item.name != MANIFEST_NAME:
            (target / item.name).symlink_to(item.resolve())
    manifest = _manifest(model_dir, bf16=False, bf16_encoder=True)
    (target / MANIFEST_NAME).write_text(manifest.to_json())
    return target


def test_a_rejected_variant_is_never_loaded(gated_model: Path) -> None:
    with pytest.raises(ModelLoadError, match="precision 'bf16': this model has no such variant that passed"):
        load_segmenter(gated_model, LoadOptions(device="cpu", precision="bf16", allow_random_weights=True))


@pytest.fixture(scope="module")
def bf16_segmenter(model_dir: Path) -> Segmenter:
    """The test model's first bf16 variant that passed its gate. Skipped only on a CPU without native bf16
    (or without OpenVINO), where the export gates none; on one with it, the export gated both, and no bf16
    variant passing is a regression of the variants or of their gate, so these tests fail."""
    if not bf16_supported():
        pytest.skip("no OpenVINO or no native bf16 on this CPU")
    gated = {name: variant for name, variant in read_manifest(model_dir).variants.items() if name in CPU_VARIANTS}
    passed = [name for name in CPU_VARIANTS if name in gated and gated[name].passed]
    if not passed:
        verdicts = {name: variant.fidelity.problems for name, variant in gated.items()} or "none gated"
        pytest.fail(f"this CPU has native bf16, but no bf16 variant of the test model passed its gate: {verdicts}")
    return load_segmenter(model_dir, LoadOptions(device="cpu", precision=passed[0], allow_random_weights=True))


def test_bf16_variant_agrees_with_fp32(bf16_segmenter: Segmenter, segmenter: Segmenter) -> None:
    assert "OpenVINO-CPU-bf16" in bf16_segmenter.engines
    assert bf16_segmenter.precision in REDUCED_PRECISIONS
    for seed, (width, height) in enumerate([(400, 300), (640, 480)]):
        _, image, _ = synth.generate(seed=seed, n=1, width=width, height=height, mode="nir")[0]
        ours, reference = bf16_segmenter.predict(image), segmenter.predict(image)
        scale = np.abs(reference.low_res_logits).max()
        assert np.abs(ours.low_res_logits - reference.low_res_logits).max() / scale <= 1e-2
        agree = np.logical_and(ours.binary, reference.binary).sum() / max(
            1, np.logical_or(ours.binary, reference.binary).sum()
        )
        assert agree >= 0.99
        assert ours.binary.shape == (height, width)


def test_bf16_variant_is_safe_across_threads(bf16_segmenter: Segmenter) -> None:
    _, image, _ = synth.generate(seed=3, n=1, width=200, height=150, mode="nir")[0]
    options = PredictOptions(points=3)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: bf16_segmenter.predict(image, options), range(3)))
    for result in results[1:]:
        assert np.array_equal(result.low_res_logits, results[0].low_res_logits)


def test_bf16_buffers_follow_concurrency_not_threads(bf16_segmenter: Segmenter) -> None:
    """Calls one after another from many threads reuse one infer request (its buffers are ~440 MB)."""
    encoder = bf16_segmenter.encoder
    assert isinstance(encoder, OpenVinoGraph)
    before = encoder.request_count
    _, image, _ = synth.generate(seed=4, n=1, width=120, height=90, mode="nir")[0]
    for _ in range(4):
        worker = threading.Thread(target=bf16_segmenter.predict, args=(image, PredictOptions(points=1)))
        worker.start()
        worker.join()
    assert encoder.request_count == max(before, 1)


def test_server_refuses_a_precision_it_cannot_serve_before_opening_its_port(gated_model: Path) -> None:
    """Exit 1 with the precision message (not a failure to bind port 1) proves the pre-flight refused first."""
    result = serve_to_exit(gated_model, "--device", "cpu", "--allow-random-weights", env={"VREYESAM_PRECISION": "int4"})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "vreyesam serve: error: VREYESAM_PRECISION must be one of auto, fp32, bf16, bf16-encoder, fp16-encoder"
    )
    refused = serve_to_exit(gated_model, "--precision", "bf16", "--allow-random-weights")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "vreyesam serve: error: precision 'bf16': this model has no such variant that passed its fidelity gate"
    )


def test_auto_takes_the_fp16_encoder_on_a_gpu_only(model_dir: Path) -> None:
    manifest = dataclasses.replace(
        read_manifest(model_dir),
        variants={"fp16-encoder": Variant("fp16", "fp32", True, FidelityReport(passed=True), TOLERANCE)},
    )
    assert _choose(manifest, "auto", on_cpu=False) == "fp16-encoder"
    assert _choose(manifest, "auto", on_cpu=True) == "fp32"
    with pytest.raises(variants.VariantUnavailable, match="runs on a GPU only"):
        _choose(manifest, "fp16-encoder", on_cpu=True)
    assert variants.choose_variant(manifest, "fp16-encoder", False, lambda: False).encoder_artifact == "encoder-fp16"


@pytest.fixture(scope="module")
def fp32_graphs(model_dir: Path) -> dict[str, OnnxRuntimeGraph]:
    """The test model's four fp32 graphs on the CPU, and a second fp32 encoder to gate against."""
    files = open_model_files(model_dir, roles=[*GRAPHS, "calibration"])
    config = SessionConfig(intra_op_threads=2)
    graphs = {role: OnnxRuntimeGraph(files.take_graph(role), ["CPUExecutionProvider"], config) for role in GRAPHS}
    encoder_bytes = (model_dir / read_manifest(model_dir).artifacts["encoder"].file).read_bytes()
    graphs["reference"] = OnnxRuntimeGraph(encoder_bytes, ["CPUExecutionProvider"], config)
    graphs["calibration"] = files.small("calibration")  # type: ignore[assignment]
    return graphs


def _as_fp16_variant(model_dir: Path, graphs: dict, thresholds: GateThresholds) -> Segmenter:
    """A segmenter labelled fp16-encoder (its encoder is fp32: the gate's logic is what is tested here)."""
    report = FidelityReport(passed=True, thresholds=thresholds)
    manifest = dataclasses.replace(
        read_manifest(model_dir), variants={"fp16-encoder": Variant("fp16", "fp32", True, report, TOLERANCE)}
    )
    return Segmenter(
        manifest=manifest,
        preprocess=graphs["preprocess"],
        encoder=graphs["encoder"],
        decoder=graphs["decoder"],
        procedure=graphs["procedure"],
        decoder_batch=1,
        precision="fp16-encoder",
    )


def test_the_device_gate_passes_an_equal_encoder_and_refuses_beyond_its_thresholds(model_dir, fp32_graphs) -> None:
    images = device_gate.calibration_images(fp32_graphs["calibration"])[:1]
    variant = _as_fp16_variant(model_dir, fp32_graphs, GateThresholds(0.99, 1e-2, 0.99))
    passed = device_gate.gate(variant, fp32_graphs["reference"], images, GateThresholds(0.99, 1e-2, 0.99))
    assert passed.passed and passed.logits_relative_error == 0.0 and passed.final_mask_iou == 1.0
    refused = device_gate.gate(variant, fp32_graphs["reference"], images, GateThresholds(1.01, -1.0, 1.01))
    assert not refused.passed and len(refused.problems) == 3
    assert set(refused.problems) == {
        "final mask iou 1 < 1.01",
        "confident pixel iou 1 < 1.01",
        "logits relative error 0 > -1",
    }
