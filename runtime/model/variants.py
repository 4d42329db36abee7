"""Which precision variant of a model to serve: the fp32 graphs, or a reduced one that passed its gates.

A variant names the precision of each network. On the CPU, `bf16` runs both networks in bf16 and
`bf16-encoder` only the encoder (the prompt decoder, whose logits are what the procedure thresholds, stays
fp32), both on OpenVINO's CPU plugin. On a GPU, `fp16-encoder` runs an fp16 encoder graph (converted and
fused at export) on the CUDA provider, the decoder in fp32. `auto` takes the fastest variant the export
passed that can run here (the CPU ones only where the CPU has native bf16), else fp32. An fp16 variant is
also gated at start on the device itself (`model.device_gate`), since the build machine has no GPU. An
explicit request that cannot be honoured is an error, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vreyesam.runtime.manifest import ENCODER, ENCODER_FP16, Manifest
from vreyesam.runtime.vocabulary import (
    CPU_VARIANTS,
    GPU_VARIANTS,
    PRECISION_REQUESTS,
    GraphPrecision,
    Precision,
)

# Graph precisions of each reduced variant: (encoder, decoder).
REDUCED_GRAPHS: dict[Precision, tuple[GraphPrecision, GraphPrecision]] = {
    "bf16": ("bf16", "bf16"),
    "bf16-encoder": ("bf16", "fp32"),
    "fp16-encoder": ("fp16", "fp32"),
}


class VariantUnavailable(Exception):
    """The requested precision variant cannot be served with this model on this machine."""


@dataclass(frozen=True)
class Choice:
    name: Precision
    encoder: GraphPrecision
    decoder: GraphPrecision
    golden_tolerance: dict[str, float]

    @property
    def encoder_artifact(self) -> str:
        """The artifact the encoder is built from: an fp16 variant has a graph of its own."""
        return ENCODER_FP16 if self.encoder == "fp16" else ENCODER

    @property
    def gated_on_device(self) -> bool:
        """Whether the variant must also pass against fp32 on the serving device before it is served."""
        return self.encoder == "fp16"


def fp32(manifest: Manifest) -> Choice:
    return Choice(name="fp32", encoder="fp32", decoder="fp32", golden_tolerance=manifest.golden_tolerance)


def _passed(manifest: Manifest, name: Precision) -> Choice | None:
    variant = manifest.variants.get(name)
    if variant is None or not variant.passed:
        return None
    return Choice(
        name=name, encoder=variant.encoder, decoder=variant.decoder, golden_tolerance=variant.golden_tolerance
    )


def choose_variant(manifest: Manifest, requested: str, on_cpu: bool, bf16_supported: Callable[[], bool]) -> Choice:
    """The variant to load; VariantUnavailable when an explicit request cannot be met."""
    if requested not in PRECISION_REQUESTS:
        raise VariantUnavailable(f"unknown precision {requested!r}; use one of {', '.join(PRECISION_REQUESTS)}")
    if requested == "fp32":
        return fp32(manifest)
    if requested == "auto":
        candidates = (CPU_VARIANTS if bf16_supported() else ()) if on_cpu else GPU_VARIANTS
        return next((c for c in (_passed(manifest, name) for name in candidates) if c is not None), fp32(manifest))
    choice = _passed(manifest, requested)  # type: ignore[arg-type]  # checked against PRECISION_REQUESTS
    if choice is None:
        raise VariantUnavailable(
            f"precision {requested!r}: this model has no such variant that passed its fidelity gate"
        )
    if requested in GPU_VARIANTS:
        if on_cpu:
            raise VariantUnavailable(f"precision {requested!r} runs on a GPU only (the CUDA provider)")
        return choice
    if not on_cpu:
        raise VariantUnavailable(f"precision {requested!r} runs on the CPU only; use fp32 on a GPU")
    if not bf16_supported():
        raise VariantUnavailable(
            f"precision {requested!r} needs OpenVINO and a CPU with native bf16 (AVX512_BF16 or AMX)"
        )
    return choice
