"""Verified model files -> ready Segmenter: choose device and variant, build the graphs, self-test.

Any failure is a ModelLoadError with a message safe to print.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from vreyesam.runtime.engines.devices import CPU_PROVIDER, resolve_providers
from vreyesam.runtime.engines.graph import DeviceUnavailable, EngineUnavailable, Graph
from vreyesam.runtime.engines.onnxruntime_graph import OnnxRuntimeGraph, SessionConfig
from vreyesam.runtime.engines.openvino_graph import OpenVinoGraph, bf16_supported
from vreyesam.runtime.manifest import DECODER, ENCODER, ENCODER_OUTPUTS, Manifest
from vreyesam.runtime.model import crypto, golden, variants
from vreyesam.runtime.model.artifacts import ModelFiles, ModelLoadError, read_model_files
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import Settings
from vreyesam.runtime.vocabulary import Device, GraphPrecision, PrecisionRequest

log = logging.getLogger("vreyesam.runtime")


@dataclass(frozen=True)
class LoadOptions:
    device: Device = "auto"
    precision: PrecisionRequest = "auto"
    intra_op_threads: int = 0
    # Prompts per decoder call; 0 = by provider: 1 on CPU (measured faster), all prompts at once on GPU.
    decoder_batch: int = 0
    allow_random_weights: bool = False
    self_test: bool = True
    model_key: bytes | None = field(default=None, repr=False)  # for encrypted model directories


def load_options(settings: Settings) -> LoadOptions:
    """The settings' load options; ModelLoadError for a model key that is not a key."""
    key_text = settings.model_key_text()
    try:
        key = crypto.parse_key(key_text) if key_text else None
    except crypto.ModelKeyError as exc:
        raise ModelLoadError(str(exc)) from None
    return LoadOptions(
        device=settings.device,
        precision=settings.precision,
        intra_op_threads=settings.threads,
        decoder_batch=settings.decoder_batch,
        allow_random_weights=settings.allow_random_weights,
        model_key=key,
    )


def plan(manifest: Manifest, options: LoadOptions) -> tuple[list[str], variants.Choice]:
    """Execution providers and precision variant for these options; ModelLoadError when they cannot be met."""
    try:
        providers = resolve_providers(options.device)
        choice = variants.choose_variant(manifest, options.precision, providers[0] == CPU_PROVIDER, bf16_supported)
    except (DeviceUnavailable, variants.VariantUnavailable) as exc:
        raise ModelLoadError(str(exc)) from None
    return providers, choice


def _graph(model: bytes, precision: GraphPrecision, providers: list[str], options: LoadOptions) -> Graph:
    if precision == "bf16":
        return OpenVinoGraph(model, options.intra_op_threads)
    return OnnxRuntimeGraph(model, providers, SessionConfig(intra_op_threads=options.intra_op_threads))


def build_segmenter(
    files: ModelFiles, providers: list[str], choice: variants.Choice, options: LoadOptions
) -> Segmenter:
    """Graphs for the chosen variant (they take the files' graph bytes), without the self-test."""
    manifest = files.manifest
    if [spec.name for spec in manifest.artifacts[ENCODER].outputs] != list(ENCODER_OUTPUTS):
        raise ModelLoadError("the encoder's outputs do not match what this runtime reads")
    try:
        encoder = _graph(files.take_graph(ENCODER), choice.encoder, providers, options)
        decoder = _graph(files.take_graph(DECODER), choice.decoder, providers, options)
    except (DeviceUnavailable, EngineUnavailable) as exc:
        raise ModelLoadError(str(exc)) from None
    decoder_batch = options.decoder_batch or (1 if providers[0] == CPU_PROVIDER else 64)
    return Segmenter(
        manifest=manifest, encoder=encoder, decoder=decoder, decoder_batch=decoder_batch, precision=choice.name
    )


def segmenter_from_files(files: ModelFiles, options: LoadOptions) -> Segmenter:
    """A ready Segmenter from verified files: planned, built and (unless disabled) self-tested."""
    providers, choice = plan(files.manifest, options)
    segmenter = build_segmenter(files, providers, choice, options)
    if options.self_test:
        try:
            errors = golden.run_golden(segmenter, golden.load_golden(files.golden), choice.golden_tolerance)
        except golden.GoldenMismatch as exc:
            raise ModelLoadError(str(exc)) from None
        log.info("golden self-test passed on %s (%s): %s", segmenter.engines, choice.name, errors)
    return segmenter


def load_segmenter(model_dir: Path, options: LoadOptions) -> Segmenter:
    """Read the model directory once, verify it, and load it; ModelLoadError when it cannot be served."""
    files = read_model_files(model_dir, allow_random_weights=options.allow_random_weights, key=options.model_key)
    return segmenter_from_files(files, options)
