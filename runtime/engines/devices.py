"""Device -> onnxruntime execution providers.

`auto` takes the CUDA execution provider when onnxruntime-gpu and a GPU are present, else the CPU. An
explicit `cuda` that cannot be honoured is an error: onnxruntime itself would silently fall back to the
CPU, so `OnnxRuntimeGraph` also checks the provider actually in use once the session is built.
"""

from __future__ import annotations

import onnxruntime as ort

from vreyesam.runtime.engines.graph import DeviceUnavailable
from vreyesam.runtime.vocabulary import DEVICES, Device

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def _cuda_usable() -> bool:
    if CUDA_PROVIDER not in ort.get_available_providers():
        return False
    # onnxruntime-gpu >= 1.21 can locate CUDA/cuDNN from pip packages or torch; harmless if absent.
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception:
            return False
    return True


def resolve_providers(device: Device) -> list[str]:
    """Provider list for onnxruntime, or DeviceUnavailable when `cuda` is asked for and absent."""
    if device not in DEVICES:
        raise DeviceUnavailable(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if device == "cpu":
        return [CPU_PROVIDER]
    if _cuda_usable():
        return [CUDA_PROVIDER, CPU_PROVIDER]
    if device == "cuda":
        raise DeviceUnavailable(
            "device 'cuda' requested but the CUDA execution provider is not available "
            "(install the [gpu] extra, onnxruntime-gpu, on a machine with an NVIDIA GPU)"
        )
    return [CPU_PROVIDER]
