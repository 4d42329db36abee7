"""The runtime's surface for the exporter: all that `vreyesam.export` may use of the rooms, in one place.

The exporter proves its graphs by running them exactly as the server will, so it needs the runtime's way
to open a model directory, the host's part of the procedure (fitting, prompt points), the golden sample,
encryption, the agreement measures and the synthetic eye generator (its calibration set). Besides this
module the exporter imports only the kernel (`manifest`, `vocabulary`); tests/test_boundaries.py holds it to
that.
"""

from __future__ import annotations

from vreyesam.runtime.engines.devices import CPU_PROVIDER
from vreyesam.runtime.engines.openvino_graph import bf16_supported
from vreyesam.runtime.media.decode import ImageInputError, read_image_file
from vreyesam.runtime.model.agreement import confident_pixel_iou, iou, relative_error
from vreyesam.runtime.model.artifacts import ModelLoadError, read_model_files, servable_manifest
from vreyesam.runtime.model.crypto import ModelKeyError, encrypt, new_key_text, parse_key
from vreyesam.runtime.model.golden import GoldenMismatch, GoldenSample, run_golden, save_golden
from vreyesam.runtime.model.loader import LoadOptions, build_segmenter, load_segmenter
from vreyesam.runtime.model.preprocess import fit_image
from vreyesam.runtime.model.procedure import sample_points, to_model_frame
from vreyesam.runtime.model.segmenter import PredictOptions, PreparedImage, Segmenter
from vreyesam.runtime.model.signature import SIGNATURE_NAME
from vreyesam.runtime.model.variants import REDUCED_GRAPHS, Choice
from vreyesam.runtime.tools.synth import generate as synthetic_eyes

__all__ = [
    "CPU_PROVIDER",
    "REDUCED_GRAPHS",
    "SIGNATURE_NAME",
    "Choice",
    "GoldenMismatch",
    "GoldenSample",
    "ImageInputError",
    "LoadOptions",
    "ModelKeyError",
    "ModelLoadError",
    "PredictOptions",
    "PreparedImage",
    "Segmenter",
    "bf16_supported",
    "build_segmenter",
    "confident_pixel_iou",
    "encrypt",
    "fit_image",
    "iou",
    "load_segmenter",
    "new_key_text",
    "parse_key",
    "read_image_file",
    "read_model_files",
    "relative_error",
    "run_golden",
    "sample_points",
    "save_golden",
    "servable_manifest",
    "synthetic_eyes",
    "to_model_frame",
]
