"""The runtime's words, defined once: devices, precisions, output kinds, image file suffixes.

Every room (and the exporter, through the manifest contract) takes these names from here, so a new output
or precision is added in one place and a typo is a type error, not a silent mismatch.
"""

from __future__ import annotations

from typing import Literal, get_args

# Where the graphs run: `auto` takes CUDA when onnxruntime-gpu and a GPU are there, else the CPU.
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[Device, ...] = get_args(Device)

# The precision of one graph: bf16 runs the fp32 graph on OpenVINO's CPU plugin; fp16 is a graph of its own
# (converted at export, for the CUDA provider).
GraphPrecision = Literal["fp32", "bf16", "fp16"]
# A served model: the fp32 graphs, or a reduced-precision variant the export gated.
Precision = Literal["fp32", "bf16", "bf16-encoder", "fp16-encoder"]
PRECISION_NAMES: tuple[Precision, ...] = get_args(Precision)
# The variants by device, fastest first: `auto` takes the first that passed its gates and can run here.
CPU_VARIANTS: tuple[Precision, ...] = ("bf16", "bf16-encoder")
GPU_VARIANTS: tuple[Precision, ...] = ("fp16-encoder",)
REDUCED_PRECISIONS: tuple[Precision, ...] = (*CPU_VARIANTS, *GPU_VARIANTS)
# What a caller may ask for: a precision, or `auto` (the fastest variant the export passed that runs here).
PrecisionRequest = Literal["auto", "fp32", "bf16", "bf16-encoder", "fp16-encoder"]
PRECISION_REQUESTS: tuple[PrecisionRequest, ...] = get_args(PrecisionRequest)

# The results a prediction can be rendered as. `mask` is the binary mask (0/255 PNG, plus COCO RLE over HTTP);
# `iris` the image cropped to the mask's box, transparent outside the mask.
OutputKind = Literal["mask", "probability", "uncertainty", "overlay", "iris"]
OUTPUT_KINDS: tuple[OutputKind, ...] = get_args(OutputKind)

# The maps a prediction holds (the procedure graph's outputs, at the input image's size).
MapName = Literal["binary", "probability", "uncertainty"]
MAP_NAMES: tuple[MapName, ...] = get_args(MapName)

# The stages one segmentation is timed by, in the order they run (model.segment), and the HTTP edge's wait for
# an admission slot before them: the timings' keys, the metrics' stage label and the trace's child spans.
Stage = Literal["decode", "preprocess", "encoder", "decoder", "procedure", "geometry", "render"]
STAGES: tuple[Stage, ...] = get_args(Stage)
QUEUE_STAGE = "queue"
SERVED_STAGES = (QUEUE_STAGE, *STAGES)

# Image files the tools pick from a folder (the bytes decide the format, never the suffix).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def map_of(kind: OutputKind) -> MapName:
    """The map an output is drawn from: the mask, the overlay and the iris from the binary mask."""
    return "binary" if kind in ("mask", "overlay", "iris") else kind  # type: ignore[return-value]


def output_folder(kind: OutputKind) -> str:
    """The folder `vreyesam predict` writes a kind to: the binary mask goes to `binary/`, as the reference's."""
    return "binary" if kind == "mask" else kind
