"""Sessions fixed to one size of the networks' free axis hold no shape arithmetic (engines.shaped).

The traced graphs compute their reshapes from `Shape` nodes of the free batch or prompt axis; beside a GPU
graph each of those small integer nodes runs on the CPU provider, costs a copy and a synchronisation, and
stops a CUDA graph from being captured. With the axis fixed through the runtime's own session options,
onnxruntime folds them at load: checked here on the graph onnxruntime optimised (at its basic level, whose
rewrites are the provider-independent ones: constant folding), which also shows the general session keeps
them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from vreyesam.runtime.engines.onnxruntime_graph import SessionConfig, session_options
from vreyesam.runtime.manifest import DECODER, DECODER_PROMPT_AXIS, ENCODER, ENCODER_BATCH_AXIS, read_manifest

# Operators that read a shape, and the inputs of the operators that take one as data.
SHAPE_READERS = {"Shape", "Size"}
SHAPE_INPUTS = {"Reshape": 1, "Expand": 1, "Tile": 1, "ConstantOfShape": 0, "Range": 0, "Resize": 3}


def optimised(model_path: Path, config: SessionConfig, out: Path) -> onnx.ModelProto:
    options = session_options(config)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(out))


def shape_arithmetic(model: onnx.ModelProto) -> Counter[str]:
    """Nodes that read a shape, and shape inputs computed at run time rather than constants."""
    constants = {initializer.name for initializer in model.graph.initializer}
    constants |= {output for node in model.graph.node if node.op_type == "Constant" for output in node.output}
    found: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type in SHAPE_READERS:
            found[node.op_type] += 1
        index = SHAPE_INPUTS.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] not in ("", *constants):
            found[f"{node.op_type}<-computed shape"] += 1
    return found


@pytest.mark.parametrize(
    ("role", "axis", "size"),
    [(ENCODER, ENCODER_BATCH_AXIS, 1), (ENCODER, ENCODER_BATCH_AXIS, 4), (DECODER, DECODER_PROMPT_AXIS, 30)],
)
def test_a_fixed_size_leaves_no_shape_arithmetic(
    model_dir: Path, tmp_path: Path, role: str, axis: str, size: int
) -> None:
    path = model_dir / read_manifest(model_dir).artifacts[role].file
    config = SessionConfig(intra_op_threads=2)
    general = shape_arithmetic(optimised(path, config, tmp_path / "general.onnx"))
    assert general["Shape"] > 0  # what the fixed size removes
    fixed = shape_arithmetic(optimised(path, replace(config, fixed_dims=((axis, size),)), tmp_path / "fixed.onnx"))
    assert fixed == Counter()
