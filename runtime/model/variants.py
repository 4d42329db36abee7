"""Which precision variant of a model to serve: the fp32 graphs, or a reduced one that passed its gate.

A variant names the precision of each graph. `bf16` runs both graphs in bf16 and `bf16-encoder` only the
encoder (the prompt decoder, whose logits are what the procedure thresholds, stays fp32); both run on
OpenVINO's CPU plugin. `auto` takes the fastest variant the export passed when the device is the CPU
and the CPU has native bf16, else fp32. An explicit request that cannot be honoured is an error, never
a silent fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vreyesam.runtime.manifest import Manifest
from vreyesam.runtime.vocabulary import PRECISION_REQUESTS, REDUCED_PRECISIONS, GraphPrecision, Precision

# Graph precisions of each reduced variant: (encoder, decoder).
REDUCED_GRAPHS: dict[Precision, tuple[GraphPrecision, GraphPrecision]] = {
    "bf16": ("bf16", "bf16"),
    "bf16-encoder": ("bf16", "fp32"),
}


class VariantUnavailable(Exception):
    """The requested precision variant cannot be served with this model on this machine."""


@dataclass(frozen=True)
class Choice:
    name: Precision
    encoder: GraphPrecision
    decoder: GraphPrecision
    golden_tolerance: dict[str, float]


def _fp32(manifest: Manifest) -> Choice:
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
        return _fp32(manifest)
    if requested == "auto":
        if on_cpu and bf16_supported():
            for name in REDUCED_PRECISIONS:
                choice = _passed(manifest, name)
                if choice is not None:
                    return choice
        return _fp32(manifest)
    choice = _passed(manifest, requested)  # type: ignore[arg-type]  # checked against PRECISION_REQUESTS
    if choice is None:
        raise VariantUnavailable(
            f"precision {requested!r}: this model has no such variant that passed its fidelity gate"
        )
    if not on_cpu:
        raise VariantUnavailable(f"precision {requested!r} runs on the CPU only; use fp32 on a GPU")
    if not bf16_supported():
        raise VariantUnavailable(
            f"precision {requested!r} needs OpenVINO and a CPU with native bf16 (AVX512_BF16 or AMX)"
        )
    return choice
