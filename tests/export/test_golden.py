"""The golden self-test refuses a model whose outputs are non-finite or off, on the provider in use."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from vreyesam.runtime.engines.openvino_graph import bf16_supported
from vreyesam.runtime.manifest import MANIFEST_NAME, sha256_hex
from vreyesam.runtime.model.artifacts import ModelLoadError
from vreyesam.runtime.model.loader import LoadOptions, load_segmenter

NEEDS_BF16 = pytest.mark.skipif(not bf16_supported(), reason="no OpenVINO or no native bf16 on this CPU")
OPTIONS = LoadOptions(device="cpu", precision="fp32", allow_random_weights=True)


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


def _repin(model_dir: Path, role: str) -> None:
    """Update the manifest's pin for a changed artifact, as an attacker with write access could."""
    raw = json.loads((model_dir / MANIFEST_NAME).read_text())
    path = model_dir / raw["artifacts"][role]["file"]
    raw["artifacts"][role].update(sha256=sha256_hex(path), bytes=path.stat().st_size)
    (model_dir / MANIFEST_NAME).write_text(json.dumps(raw))


def test_graph_that_yields_nan_is_refused(model_dir: Path, tmp_path: Path) -> None:
    target = _copy(model_dir, tmp_path)
    decoder = onnx.load(str(target / "decoder.onnx"))
    producer = next(node for node in decoder.graph.node if "scores" in node.output)
    producer.output[list(producer.output).index("scores")] = "scores_before_nan"
    decoder.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan_constant"))
    decoder.graph.node.append(helper.make_node("Mul", ["scores_before_nan", "nan_constant"], ["scores"]))
    onnx.save(decoder, str(target / "decoder.onnx"))
    _repin(target, "decoder")
    with pytest.raises(ModelLoadError, match="non-finite outputs"):
        load_segmenter(target, OPTIONS)


@pytest.mark.parametrize(
    ("precision", "tolerance"), [("fp32", r"0\.01"), pytest.param("bf16-encoder", r"0\.05", marks=NEEDS_BF16)]
)
def test_corrupted_expectation_is_refused(model_dir: Path, tmp_path: Path, precision: str, tolerance: str) -> None:
    target = _copy(model_dir, tmp_path)
    with np.load(target / "golden.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["low_res_logits"] = arrays["low_res_logits"] * 1.5 + 0.1
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    (target / "golden.npz").write_bytes(buffer.getvalue())
    _repin(target, "golden")
    with pytest.raises(ModelLoadError, match=rf"golden self-test: logits relative error .* > {tolerance}"):
        load_segmenter(target, dataclasses.replace(OPTIONS, precision=precision))


def test_tampered_file_without_repin_fails_verification(model_dir: Path, tmp_path: Path) -> None:
    target = _copy(model_dir, tmp_path)
    data = bytearray((target / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (target / "decoder.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="decoder artifact does not match its sha256") as refused:
        load_segmenter(target, OPTIONS)
    assert str(target) not in str(refused.value) and "decoder.onnx" not in str(refused.value)
