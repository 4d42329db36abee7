"""Work per graph: the multiply-accumulates of an exported ONNX graph's matrix and convolution nodes.

    python -m benchmarks.flops --model DIR [--prompts 30]

Counted from the graph itself (its values' shapes from one run on zeros at concrete input sizes), so it is
the work the engines run: MatMul, Gemm, Conv and ConvTranspose nodes; element-wise nodes are left out (they
are memory traffic, not arithmetic). Nodes whose inputs are all constants are left out too, since every
engine folds them when it loads the graph. Needs the `onnx` package (the builder environment).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from vreyesam.runtime.manifest import DECODER, DECODER_PROMPT_AXIS, ENCODER, ENCODER_BATCH_AXIS, read_manifest

COUNTED = {"MatMul", "Gemm", "Conv", "ConvTranspose"}
Shape = tuple[int, ...]


def _run_shapes(model: onnx.ModelProto, names: set[str], dims: dict[str, int]) -> dict[str, Shape]:
    """The shapes of `names` in one run of the graph on zeros: each value's `Shape` made a graph output
    (static shape inference cannot follow the data-dependent reshapes of a traced graph)."""
    graph = model.graph
    shape_of = {name: f"{name}::shape" for name in names}
    graph.node.extend(helper.make_node("Shape", [name], [out]) for name, out in shape_of.items())
    graph.output.extend(helper.make_tensor_value_info(out, onnx.TensorProto.INT64, None) for out in shape_of.values())
    feeds = {}
    for value in graph.input:
        tensor = value.type.tensor_type
        shape = [dim.dim_value if dim.HasField("dim_value") else dims[dim.dim_param] for dim in tensor.shape.dim]
        feeds[value.name] = np.zeros(shape, dtype=helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(list(shape_of.values()), feeds)
    return {name: tuple(int(d) for d in value) for name, value in zip(shape_of, values, strict=True)}


def _constants(model: onnx.ModelProto) -> set[str]:
    """Values computable at load time: initializers, Constant nodes, and nodes fed only by those."""
    constant = {tensor.name for tensor in model.graph.initializer}
    for node in model.graph.node:  # ONNX nodes are topologically sorted
        if all(name in constant for name in node.input if name):
            constant.update(node.output)
    return constant


def _node_macs(node: onnx.NodeProto, shapes: dict[str, Shape]) -> int:
    a, b, out = shapes[node.input[0]], shapes[node.input[1]], shapes[node.output[0]]
    if node.op_type == "MatMul":
        return math.prod(out) * a[-1]
    if node.op_type == "Gemm":
        trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
        return math.prod(out) * (a[0] if trans_a else a[1])
    if node.op_type == "Conv":  # weight Cout x Cin/groups x kernel...
        return math.prod(out) * math.prod(b[1:])
    # ConvTranspose (weight Cin x Cout/groups x kernel...): each input element meets Cout/groups x kernel weights.
    return math.prod(a) * math.prod(b[1:])


def graph_macs(path: Path, dims: dict[str, int]) -> int:
    """Multiply-accumulates of one run of the graph at `path`, with its symbolic input axes set by `dims`."""
    model = onnx.load(str(path))
    constants = _constants(model)
    counted = [
        node
        for node in model.graph.node
        if node.op_type in COUNTED and not all(name in constants for name in node.input if name)
    ]
    shapes = _run_shapes(model, {name for node in counted for name in (*node.input[:2], node.output[0])}, dims)
    return sum(_node_macs(node, shapes) for node in counted)


def network_gflop(model_dir: Path, prompts: int) -> dict[str, float]:
    """GFLOP (2 per multiply-accumulate) of the encoder for one image and the decoder for `prompts` prompts."""
    manifest = read_manifest(model_dir)
    encoder = graph_macs(model_dir / manifest.artifacts[ENCODER].file, {ENCODER_BATCH_AXIS: 1})
    decoder = graph_macs(model_dir / manifest.artifacts[DECODER].file, {DECODER_PROMPT_AXIS: 1})
    return {"encoder": 2e-9 * encoder, "decoder": 2e-9 * decoder * prompts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps({name: round(value, 2) for name, value in network_gflop(args.model, args.prompts).items()}))


if __name__ == "__main__":
    main()
