"""The procedure graph: the VREyeSAM ensemble after the decoder, on the execution provider.

Inputs: the decoder's N first-multimask logits (Nx256x256) and scores (N), the probability threshold, the
fitted and the input image sizes. Outputs, each at the input size: `binary` (bool), `probability` and
`uncertainty` (float32 in [0, 1]), and `area_px` (the binary mask's pixel count, so statistics need no
copy of the mask). The steps are the reference's (Inference.py, Test.py), as the numpy procedure did them:
- each prompt's logits upscaled to the fitted size (bilinear, half-pixel centres: torch's
  `F.interpolate(align_corners=False)` and `cv2.INTER_LINEAR`) and thresholded at the mask logit threshold;
- probability = clip(sum_i w_i mask_i, 0, 1), w = scores / sum(scores) (uniform when the sum is not
  positive); binary = probability > threshold. Two forms compute the same sum, in the same order, to the
  same bits (tested): `sequential` (the CPU's) adds one upscaled mask at a time in a `Loop`, so the N
  full-size maps never exist at once (30 x 1024 x 768 float32 would be ~94 MB, and streaming them through
  memory was 2.8x slower on a 2-core CPU); `parallel` (the GPU's) upscales all N in one `Resize` over the
  prompt axis and sums along it, with no `Loop` to step through on the host;
- uncertainty = 1 - |2 sigmoid(l) - 1| of the best-scoring prompt's clamped logits, min-max scaled;
- probability and uncertainty resized to the input size bilinearly; binary by nearest neighbour through
  the index maps `cv2.INTER_NEAREST` uses (`min(floor(x / (dst / src)), src - 1)`, in float64), so the
  mask equals cv2's pixel for pixel where `Resize` nearest, computing the source index in float32, does
  not (1024x682 -> 1500x1000: 738 pixels differ).
Only the outputs a request asks for are computed (onnxruntime runs what the fetched outputs need).
"""

# No `from __future__ import annotations`: onnxscript reads the tensor types in the signatures as objects.

import onnx
from onnxscript import BOOL, DOUBLE, FLOAT, INT64, script
from onnxscript import opset18 as op

from vreyesam.runtime.manifest import (
    PROCEDURE_INPUTS,
    PROCEDURE_OUTPUTS,
    PROCEDURE_PROMPT_AXIS,
    Preprocessing,
    ProcedureDefaults,
)

OPSET = 18
PROMPTS = PROCEDURE_PROMPT_AXIS


def build(prep: Preprocessing, defaults: ProcedureDefaults, *, parallel: bool = False) -> onnx.ModelProto:
    """The graph for these procedure constants (the threshold is an input: each request may set it); the
    prompts one at a time, or all at once when `parallel`."""
    if prep.low_res_size != 256:
        raise ValueError("the procedure graph is written for 256x256 decoder logits")
    mask_threshold = float(defaults.mask_logit_threshold)
    clamp = float(defaults.logit_clamp)

    @script(default_opset=op)
    def nearest_index(dst_size: INT64, src_size: INT64) -> INT64["n"]:  # noqa: F821 - symbolic dim
        """cv2.INTER_NEAREST's source index of every destination index along one axis."""
        dst = op.Cast(op.Range(op.Constant(value_int=0), dst_size, op.Constant(value_int=1)), to=DOUBLE.dtype)
        inverse_scale = op.Cast(dst_size, to=DOUBLE.dtype) / op.Cast(src_size, to=DOUBLE.dtype)
        source = op.Cast(op.Floor(dst * op.Reciprocal(inverse_scale)), to=INT64.dtype)
        return op.Min(source, src_size - op.Constant(value_int=1))

    @script(default_opset=op)
    def resize_bilinear(plane: FLOAT["a", "b"], size_hw: INT64[2]) -> FLOAT["c", "d"]:  # noqa: F821
        sizes = op.Concat(op.Constant(value_ints=[1, 1]), size_hw, axis=0)
        resized = op.Resize(op.Unsqueeze(plane, [0, 1]), None, None, sizes, mode="linear")
        return op.Squeeze(resized, [0, 1])

    @script(default_opset=op)
    def weights_of(scores: FLOAT[PROMPTS]) -> FLOAT[PROMPTS]:
        """scores / sum(scores), or uniform when the sum is not positive."""
        count = op.Shape(scores)
        total = op.ReduceSum(scores, keepdims=0)
        uniform = op.Expand(op.Constant(value_float=1.0) / op.Cast(count, to=FLOAT.dtype), count)
        return op.Where(total > op.Constant(value_float=0.0), scores / total, uniform)

    @script(default_opset=op)
    def vote_sequential(
        low_res_logits: FLOAT[PROMPTS, 256, 256],
        weights: FLOAT[PROMPTS],
        fitted_hw: INT64[2],
    ) -> FLOAT["h", "w"]:  # noqa: F821
        vote = op.ConstantOfShape(fitted_hw)  # float32 zeros
        sizes = op.Concat(op.Constant(value_ints=[1, 1]), fitted_hw, axis=0)
        prompts = op.Squeeze(op.Shape(weights), [0])
        for index in range(prompts):
            position = op.Unsqueeze(index, [0])
            logits = op.Unsqueeze(op.Gather(low_res_logits, position, axis=0), [0])  # 1x1x256x256
            upscaled = op.Squeeze(op.Resize(logits, None, None, sizes, mode="linear"), [0, 1])
            weight = op.Squeeze(op.Gather(weights, position, axis=0), [0])
            mask = upscaled > op.Constant(value_float=mask_threshold)
            vote = vote + op.Where(mask, weight, op.Constant(value_float=0.0))
        return vote

    @script(default_opset=op)
    def vote_parallel(
        low_res_logits: FLOAT[PROMPTS, 256, 256],
        weights: FLOAT[PROMPTS],
        fitted_hw: INT64[2],
    ) -> FLOAT["h", "w"]:  # noqa: F821
        sizes = op.Concat(op.Shape(weights), op.Constant(value_ints=[1]), fitted_hw, axis=0)
        upscaled = op.Resize(op.Unsqueeze(low_res_logits, [1]), None, None, sizes, mode="linear")
        mask = upscaled > op.Constant(value_float=mask_threshold)
        per_prompt = op.Reshape(weights, op.Constant(value_ints=[-1, 1, 1, 1]))
        votes = op.Where(mask, per_prompt, op.Constant(value_float=0.0))
        return op.Squeeze(op.ReduceSum(votes, op.Constant(value_ints=[0]), keepdims=0), [0])

    vote = vote_parallel if parallel else vote_sequential

    @script(default_opset=op)
    def procedure(
        low_res_logits: FLOAT[PROMPTS, 256, 256],
        scores: FLOAT[PROMPTS],
        threshold: FLOAT,
        fitted_hw: INT64[2],
        input_hw: INT64[2],
    ) -> tuple[BOOL["H", "W"], FLOAT["H", "W"], FLOAT["H", "W"], INT64]:  # noqa: F821
        summed = vote(low_res_logits, weights_of(scores), fitted_hw)
        probability_fitted = op.Clip(summed, op.Constant(value_float=0.0), op.Constant(value_float=1.0))

        rows = nearest_index(op.Gather(input_hw, 0), op.Gather(fitted_hw, 0))
        columns = nearest_index(op.Gather(input_hw, 1), op.Gather(fitted_hw, 1))
        binary_fitted = probability_fitted > threshold
        binary = op.Gather(op.Gather(binary_fitted, rows, axis=0), columns, axis=1)
        probability = resize_bilinear(probability_fitted, input_hw)

        best = op.Gather(low_res_logits, op.ArgMax(scores, keepdims=1), axis=0)
        clamped = op.Clip(op.Squeeze(best, [0]), op.Constant(value_float=-clamp), op.Constant(value_float=clamp))
        spread = op.Constant(value_float=1.0) - op.Abs(op.Constant(value_float=2.0) * op.Sigmoid(clamped) - 1.0)
        low = op.ReduceMin(spread, keepdims=0)
        scaled = (spread - low) / (op.ReduceMax(spread, keepdims=0) - low + op.Constant(value_float=1e-8))
        uncertainty = resize_bilinear(scaled, input_hw)
        area_px = op.ReduceSum(op.Cast(binary, to=INT64.dtype), keepdims=0)
        return binary, probability, uncertainty, area_px

    model = procedure.to_model_proto()
    for value, name in zip(model.graph.input, PROCEDURE_INPUTS, strict=True):
        if value.name != name:
            raise ValueError(f"procedure graph input {value.name!r} is not the contract's {name!r}")
    _name_outputs(model, PROCEDURE_OUTPUTS)
    onnx.checker.check_model(model, full_check=True)
    return model


def _name_outputs(model: onnx.ModelProto, names: tuple[str, ...]) -> None:
    renames = {value.name: name for value, name in zip(model.graph.output, names, strict=True)}
    for node in model.graph.node:
        node.output[:] = [renames.get(output, output) for output in node.output]
    for value in model.graph.output:
        value.name = renames[value.name]
