"""The preprocessing graph: the fitted uint8 image in, SAM2's normalised 1x3x1024x1024 encoder input out.

It is SAM2Transforms without torch, on the execution provider: ToTensor (/255), Resize((1024, 1024)) with
torchvision's antialiased bilinear filter, Normalize. ONNX `Resize` with `antialias=1` (opset 18) is that
filter (onnxruntime's kernel follows Pillow's, as torchvision does). The host only fits the decoded image
to 1024 with `cv2.resize` on uint8, exactly as the reference does, and hands this graph the fitted bytes:
a quarter of the float tensor's size to copy to a device.

`check` holds the graph to the torch side of the gate (`TorchReference.encoder_input`) before the export
writes it.
"""

# No `from __future__ import annotations`: onnxscript reads the tensor types in the signatures as objects.

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxscript import FLOAT, UINT8, script
from onnxscript import opset18 as op

from vreyesam.export.reference import TorchReference
from vreyesam.runtime.manifest import PREPROCESS_INPUT, PREPROCESS_OUTPUT, Preprocessing

OPSET = 18  # Resize's `antialias` attribute
# What the graph may differ from torch's transforms by, in normalised units. onnxruntime computes a resize's
# sampling positions in float32 where torch uses float64: ~1e-4 at most on some aspect ratios.
MAX_ABS_ERROR = 5e-4


def build(prep: Preprocessing) -> onnx.ModelProto:
    """The graph for these preprocessing constants: `fitted` (h x w x 3 uint8 RGB) -> `image`."""
    size = prep.image_size
    mean = numpy_helper.from_array(np.asarray(prep.mean, np.float32).reshape(1, 3, 1, 1))
    std = numpy_helper.from_array(np.asarray(prep.std, np.float32).reshape(1, 3, 1, 1))

    @script(default_opset=op)
    def preprocess(fitted: UINT8["h", "w", 3]) -> FLOAT[1, 3, "S", "S"]:  # noqa: F821 - symbolic dims
        planes = op.Unsqueeze(op.Transpose(op.Cast(fitted, to=onnx.TensorProto.FLOAT), perm=[2, 0, 1]), [0])
        unit = planes * op.Constant(value_float=1.0 / 255.0)
        sizes = op.Constant(value_ints=[1, 3, size, size])
        resized = op.Resize(unit, None, None, sizes, mode="linear", antialias=1)
        image = (resized - op.Constant(value=mean)) / op.Constant(value=std)
        return image

    model = preprocess.to_model_proto()
    model.graph.input[0].name = PREPROCESS_INPUT
    _rename_output(model, PREPROCESS_OUTPUT)
    onnx.checker.check_model(model, full_check=True)
    return model


def _rename_output(model: onnx.ModelProto, name: str) -> None:
    """Give the graph's single output its contract name (onnxscript names it after the returned variable)."""
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [name if output == old else output for output in node.output]
    model.graph.output[0].name = name


def check(model: onnx.ModelProto, reference: TorchReference, fitted_images: list[np.ndarray]) -> float:
    """Max abs difference to torch's transforms over the images; ValueError when beyond MAX_ABS_ERROR."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = 0.0
    for fitted in fitted_images:
        ours = session.run([PREPROCESS_OUTPUT], {PREPROCESS_INPUT: fitted})[0]
        expected = reference.encoder_input(fitted).numpy()
        worst = max(worst, float(np.abs(ours - expected).max()))
    if not worst <= MAX_ABS_ERROR:
        raise ValueError(f"preprocessing graph differs from torch's transforms by {worst:.2e} > {MAX_ABS_ERROR:.0e}")
    return worst
