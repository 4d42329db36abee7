"""The model directory the exporter writes: complete, pinned, and free of local details."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

import numpy as np
import onnx

from vreyesam.runtime.engines.openvino_graph import bf16_supported
from vreyesam.runtime.manifest import MANIFEST_NAME, PROCEDURE_INPUTS, PROCEDURE_OUTPUTS, read_manifest, sha256_hex
from vreyesam.runtime.model.signature import SIGNATURE_NAME


def test_every_artifact_is_pinned(model_dir: Path) -> None:
    manifest = read_manifest(model_dir)
    required = {"preprocess", "encoder", "decoder", "procedure", "procedure-parallel", "golden"}
    assert required <= set(manifest.artifacts) <= {*required, "encoder-fp16", "calibration"}
    listed = {artifact.file for artifact in manifest.artifacts.values()}
    # The signature (`--sign-key`, as `make test` exports) signs the manifest and is not listed in it.
    assert listed | {MANIFEST_NAME} == {p.name for p in model_dir.iterdir()} - {SIGNATURE_NAME}
    for artifact in manifest.artifacts.values():
        assert sha256_hex(model_dir / artifact.file) == artifact.sha256
        assert (model_dir / artifact.file).stat().st_size == artifact.bytes


def test_random_weights_are_recorded(model_dir: Path) -> None:
    manifest = read_manifest(model_dir)
    assert manifest.source.random_weights is True
    assert manifest.source.kind == "random"
    assert manifest.source.sha256 is None
    assert manifest.model_version == "random-seed0"


def test_contract_fields(model_dir: Path) -> None:
    manifest = read_manifest(model_dir)
    assert manifest.sam2_config == "configs/sam2/sam2_hiera_s.yaml"
    assert (manifest.opset, manifest.precision) == (17, "fp32")
    assert (manifest.procedure.points, manifest.procedure.threshold, manifest.procedure.seed) == (30, 0.2, 0)
    assert manifest.preprocessing.mean == (0.485, 0.456, 0.406)
    decoder_inputs = {spec.name: spec.shape for spec in manifest.artifacts["decoder"].inputs}
    assert decoder_inputs["point_coords"] == ["prompts", 1, 2]
    assert [spec.name for spec in manifest.artifacts["preprocess"].inputs] == ["fitted"]
    assert manifest.artifacts["preprocess"].inputs[0].dtype == "uint8"
    procedure = manifest.artifacts["procedure"]
    assert [spec.name for spec in procedure.inputs] == list(PROCEDURE_INPUTS)
    assert [spec.name for spec in procedure.outputs] == list(PROCEDURE_OUTPUTS)
    assert manifest.fidelity.passed is True
    assert manifest.fidelity.problems == ()
    assert manifest.fidelity.worst is not None
    assert manifest.fidelity.worst.final_mask_iou >= 0.999
    assert manifest.fidelity.worst.logits_relative_error <= 1e-4
    assert len(manifest.fidelity.images) >= 4
    assert {"torch", "sam2", "onnx", "onnxruntime", "python"} <= set(manifest.tools)


def test_reduced_precision_variants_carry_their_gate_verdict(model_dir: Path) -> None:
    variants = read_manifest(model_dir).variants
    assert set(variants) == ({"bf16", "bf16-encoder"} if bf16_supported() else set()) | {"fp16-encoder"}
    for name, variant in variants.items():
        worst, thresholds = variant.fidelity.worst, variant.fidelity.thresholds
        assert worst is not None and thresholds is not None
        assert thresholds.max_logits_relative_error == 1e-2
        assert thresholds.min_confident_pixel_iou == 0.99
        within = worst.logits_relative_error <= 1e-2 and worst.confident_pixel_iou >= 0.99
        assert variant.passed is within, (name, worst)
        engine = "CPUExecutionProvider" if name == "fp16-encoder" else "OpenVINO-CPU-bf16"
        assert variant.fidelity.measured_on.startswith(engine)
        assert bool(variant.fidelity.problems) is not variant.passed
        assert variant.golden_tolerance["logits_relative_error"] > 0


def test_no_local_paths_user_or_token(model_dir: Path) -> None:
    text = (model_dir / MANIFEST_NAME).read_text()
    values: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)
        elif isinstance(node, str):
            values.append(node)

    collect(json.loads(text))
    assert not [v for v in values if v.startswith(("/", "~")) or "\\" in v]
    assert str(model_dir) not in text and str(Path.home()) not in text
    assert f'"{getpass.getuser()}"' not in text
    assert "hf_" not in text and os.environ.get("HF_TOKEN", "unset-token") not in text


def test_the_fp16_encoder_is_an_fp16_graph_with_fp32_edges(model_dir: Path) -> None:
    """Fused (SAM2 attention), converted to fp16 inside, the same fp32 inputs and outputs as the encoder."""
    manifest = read_manifest(model_dir)
    fp16, fp32 = manifest.artifacts["encoder-fp16"], manifest.artifacts["encoder"]
    assert [(t.name, t.dtype) for t in fp16.inputs] == [(t.name, t.dtype) for t in fp32.inputs]
    assert [(t.name, t.dtype) for t in fp16.outputs] == [(t.name, t.dtype) for t in fp32.outputs]
    graph = onnx.load(str(model_dir / fp16.file)).graph
    operators = {node.op_type for node in graph.node}
    assert "MultiHeadAttention" in operators
    assert sum(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer) > 100
    assert fp16.bytes < 0.6 * fp32.bytes
    with np.load(model_dir / manifest.artifacts["calibration"].file) as calibration:
        assert len(calibration.files) >= 4 and all(calibration[name].dtype == np.uint8 for name in calibration.files)
