"""The fp16 encoder graph of the `fp16-encoder` variant, for the CUDA execution provider.

From the folded fp32 encoder (no `If` nodes left, which fp16 conversion cannot pass): onnxruntime's
transformer optimizer for SAM2 (`model_type="sam2"`) fuses the attention blocks and LayerNorms, then the
graph is converted to fp16 with its inputs and outputs kept fp32 (the rest of the pipeline is unchanged) and
the numerically touchy operators kept fp32: normalisations, softmax and the positional-embedding resize.
The same recipe broke the *decoder* when it was tried (logits relative error 1.17), so only the encoder is
converted; the gate decides whether even that ships. onnxruntime's CPU provider runs the result (slowly),
which is what the export's gate needs; the server gates it again on the GPU before serving it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
from onnxruntime.transformers.optimizer import optimize_model

# Kept in fp32: where fp16's range or precision is known to hurt (normalisation statistics, softmax sums).
FP32_OPERATORS = [
    "LayerNormalization",
    "SimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "Softmax",
    "ReduceMean",
    "Pow",
    "Sqrt",
    "Resize",
]


def build(fp32_encoder: Path, out: Path) -> onnx.ModelProto:
    """Fuse and convert `fp32_encoder`, save the fp16 graph to `out`, and return it."""
    # The optimizer reports its fusions at INFO through the root logger; they are noise in an export log.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.WARNING)
    model = optimize_model(str(fp32_encoder), model_type="sam2", opt_level=0, use_gpu=True)
    model.convert_float_to_float16(keep_io_types=True, op_block_list=FP32_OPERATORS)
    _drop_repeated_casts(model.model.graph)
    model.save_model_to_file(str(out), use_external_data_format=False)
    converted = onnx.load(str(out))
    onnx.checker.check_model(converted)
    return converted


def _drop_repeated_casts(graph: onnx.GraphProto) -> None:
    """Keep the first of several identical `Cast` nodes writing one value.

    onnxruntime's converter before 1.32 casts a weight shared by several fp32-kept nodes once per node under
    one name, which breaks single assignment; the copies compute the same value, and the first of them
    precedes every reader (the converter inserts each just before its reader).
    """
    seen: set[bytes] = set()
    kept = []
    for node in graph.node:
        if node.op_type == "Cast":
            key = node.SerializeToString(deterministic=True).replace(node.name.encode(), b"")
            if key in seen:
                continue
            seen.add(key)
        kept.append(node)
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
