"""The fp16 encoder's clean-up of the converter's output (onnxruntime's converter before 1.32 writes one
value from several identical `Cast` nodes when fp32-kept nodes share a weight)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from vreyesam.export.fp16_encoder import _drop_repeated_casts


def _shared_weight_graph() -> onnx.ModelProto:
    """x -> LayerNorm(w) -> LayerNorm(w): the shape the converter casts twice under one name."""
    weight = numpy_helper.from_array(np.full(4, 0.5, np.float16), "w")
    cast = {"to": TensorProto.FLOAT}
    nodes = [
        helper.make_node("Cast", ["w"], ["w_cast_to_fp32"], name="cast_a", **cast),
        helper.make_node("LayerNormalization", ["x", "w_cast_to_fp32"], ["h"], name="ln_a"),
        helper.make_node("Cast", ["w"], ["w_cast_to_fp32"], name="cast_b", **cast),
        helper.make_node("LayerNormalization", ["h", "w_cast_to_fp32"], ["y"], name="ln_b"),
    ]
    graph = helper.make_graph(
        nodes,
        "shared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_repeated_casts_are_dropped_and_the_graph_is_valid_and_runs() -> None:
    model = _shared_weight_graph()
    with pytest.raises(onnx.checker.ValidationError, match="single static assignment"):
        onnx.checker.check_model(model)
    _drop_repeated_casts(model.graph)
    onnx.checker.check_model(model)
    assert [node.name for node in model.graph.node] == ["cast_a", "ln_a", "ln_b"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    (y,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    normalised = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * 0.5
    twice = (normalised - normalised.mean(-1, keepdims=True)) / np.sqrt(normalised.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, twice * 0.5, atol=1e-5)


def test_distinct_casts_of_one_value_are_kept() -> None:
    model = _shared_weight_graph()
    model.graph.node[2].output[0] = "w_other"
    model.graph.node[3].input[1] = "w_other"
    _drop_repeated_casts(model.graph)
    assert len(model.graph.node) == 4
