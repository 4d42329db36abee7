"""Manifest records of the files the export writes: size, sha256 and, for a graph, its inputs and outputs."""

from __future__ import annotations

from pathlib import Path

import onnx

from vreyesam.runtime.manifest import Artifact, TensorSpec, sha256_hex

_ONNX_TYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.BOOL: "bool",
}


def _specs(values: list[onnx.ValueInfoProto]) -> list[TensorSpec]:
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        shape = [dim.dim_param or dim.dim_value for dim in tensor.shape.dim]
        specs.append(
            TensorSpec(name=value.name, dtype=_ONNX_TYPES.get(tensor.elem_type, str(tensor.elem_type)), shape=shape)
        )
    return specs


def artifact(path: Path) -> Artifact:
    """The pinned record of one file of the model directory."""
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    if path.suffix == ".onnx":
        graph = onnx.load(str(path), load_external_data=False).graph
        inputs, outputs = _specs(list(graph.input)), _specs(list(graph.output))
    return Artifact(file=path.name, sha256=sha256_hex(path), bytes=path.stat().st_size, inputs=inputs, outputs=outputs)
