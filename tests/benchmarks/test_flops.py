"""The work counter behind the benchmark's GFLOP/s, on a graph whose multiply-accumulates are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the work counter reads ONNX graphs (builder environment)")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from benchmarks.flops import graph_macs  # noqa: E402


def _initializer(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


def test_counts_matrix_and_convolution_work_and_skips_constants(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"]),  # n x 3 x 4 @ 4 x 5: n*3*5*4
        helper.make_node("MatMul", ["w", "w2"], ["folded"]),  # constants only: folded at load, not counted
        helper.make_node("Conv", ["image", "k"], ["conv"], pads=[1, 1, 1, 1]),  # 3x8x8 outputs x 2*3*3
        helper.make_node("ConvTranspose", ["conv", "kt"], ["up"], strides=[2, 2]),  # 3*8*8 inputs x 2*2*2
    ]
    graph = helper.make_graph(
        nodes,
        "work",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 4]),
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 2, 8, 8]),
        ],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("mm", "folded", "up")],
        [
            _initializer("w", 4, 5),
            _initializer("w2", 5, 6),
            _initializer("k", 3, 2, 3, 3),
            _initializer("kt", 3, 2, 2, 2),
        ],
    )
    path = tmp_path / "work.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert graph_macs(path, {"n": 2}) == 2 * 3 * 5 * 4 + 3 * 8 * 8 * 2 * 3 * 3 + 3 * 8 * 8 * 2 * 2 * 2
    assert graph_macs(path, {"n": 7}) - graph_macs(path, {"n": 2}) == 5 * 3 * 5 * 4
