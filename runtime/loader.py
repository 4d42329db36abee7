"""Model directory -> ready Segmenter: verify, build sessions, self-test. Any failure refuses to load."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

from vreyesam.runtime import crypto, golden, variants
from vreyesam.runtime.manifest import (
    DECODER,
    ENCODER,
    GOLDEN,
    Manifest,
    ManifestError,
    load_verified_manifest,
)
from vreyesam.runtime.segmenter import Features, Segmenter
from vreyesam.runtime.sessions import (
    CPU_PROVIDER,
    Device,
    DeviceUnavailable,
    InferenceGraph,
    SessionConfig,
    create_session,
    resolve_providers,
)
from vreyesam.runtime.settings import Settings

log = logging.getLogger("vreyesam.runtime")


class ModelLoadError(Exception):
    """The model directory cannot be served; the message is safe to print (no paths, no secrets)."""


@dataclass(frozen=True)
class LoadOptions:
    device: Device = "auto"
    precision: str = "auto"  # "auto" | "fp32" | a reduced variant the export passed (runtime.variants)
    intra_op_threads: int = 0
    # Prompts per decoder call; 0 = by provider: 1 on CPU (measured faster), all prompts at once on GPU.
    decoder_batch: int = 0
    allow_random_weights: bool = False
    self_test: bool = True
    model_key: bytes | None = field(default=None, repr=False)  # for encrypted model directories


def load_options(settings: Settings) -> LoadOptions:
    key_text = settings.model_key_text()
    return LoadOptions(
        device=settings.device,
        precision=settings.precision,
        intra_op_threads=settings.threads,
        decoder_batch=settings.decoder_batch,
        allow_random_weights=settings.allow_random_weights,
        model_key=crypto.parse_key(key_text) if key_text else None,
    )


def read_artifact(model_dir: Path, manifest: Manifest, role: str, key: bytes | None) -> bytes:
    """An artifact's bytes, decrypted in memory when the model is encrypted (graphs only)."""
    data = (model_dir / manifest.artifacts[role].file).read_bytes()
    if not manifest.encrypted or role == GOLDEN:
        return data
    if key is None:
        raise crypto.ModelKeyError("the model is encrypted: set VREYESAM_MODEL_KEY_FILE (or VREYESAM_MODEL_KEY)")
    return crypto.decrypt(data, key, role)


def servable_manifest(model_dir: Path, allow_random_weights: bool) -> Manifest:
    """The manifest, once every artifact matches its sha256 and the random-weights policy allows it."""
    try:
        manifest = load_verified_manifest(model_dir)
    except ManifestError as exc:
        raise ModelLoadError(f"model directory failed verification: {exc}") from None
    if manifest.source.random_weights and not allow_random_weights:
        raise ModelLoadError(
            "model was exported with random weights (a demo); set VREYESAM_ALLOW_RANDOM_WEIGHTS=1 to serve it"
        )
    return manifest


def _graph(model: bytes, precision: str, providers: list[str], options: LoadOptions) -> InferenceGraph:
    if precision == variants.BF16:
        from vreyesam.runtime.openvino_sessions import OpenVinoGraph

        return OpenVinoGraph(model, options.intra_op_threads)
    return create_session(
        model, providers, SessionConfig(device=options.device, intra_op_threads=options.intra_op_threads)
    )


def plan(manifest: Manifest, options: LoadOptions) -> tuple[list[str], variants.Choice]:
    """Execution providers and precision variant for these options; ModelLoadError when they cannot be met."""
    from vreyesam.runtime.openvino_sessions import bf16_supported

    try:
        providers = resolve_providers(options.device)
        choice = variants.choose_variant(manifest, options.precision, providers[0] == CPU_PROVIDER, bf16_supported)
    except (DeviceUnavailable, variants.VariantUnavailable) as exc:
        raise ModelLoadError(str(exc)) from None
    return providers, choice


def build_segmenter(
    model_dir: Path, manifest: Manifest, providers: list[str], choice: variants.Choice, options: LoadOptions
) -> Segmenter:
    """Graphs for the chosen variant, without the self-test (the exporter gates variants with this)."""
    outputs = [spec.name for spec in manifest.artifacts[ENCODER].outputs]
    if outputs != [item.name for item in fields(Features)]:
        raise ModelLoadError("the encoder's outputs do not match what this runtime reads")
    from vreyesam.runtime.openvino_sessions import OpenVinoUnavailable

    try:
        encoder, decoder = (
            _graph(read_artifact(model_dir, manifest, role, options.model_key), precision, providers, options)
            for role, precision in ((ENCODER, choice.encoder), (DECODER, choice.decoder))
        )
    except (DeviceUnavailable, OpenVinoUnavailable, crypto.ModelKeyError) as exc:
        raise ModelLoadError(str(exc)) from None
    decoder_batch = options.decoder_batch or (1 if providers[0] == CPU_PROVIDER else 64)
    return Segmenter(
        manifest=manifest, encoder=encoder, decoder=decoder, decoder_batch=decoder_batch, precision=choice.name
    )


def load_segmenter(model_dir: Path, options: LoadOptions) -> Segmenter:
    manifest = servable_manifest(model_dir, options.allow_random_weights)
    providers, choice = plan(manifest, options)
    segmenter = build_segmenter(model_dir, manifest, providers, choice, options)
    if options.self_test:
        sample = golden.load_golden(read_artifact(model_dir, manifest, GOLDEN, None))
        try:
            errors = golden.run_golden(segmenter, sample, choice.golden_tolerance)
        except golden.GoldenMismatch as exc:
            raise ModelLoadError(str(exc)) from None
        log.info("golden self-test passed on %s (%s): %s", segmenter.provider, choice.name, errors)
    return segmenter
