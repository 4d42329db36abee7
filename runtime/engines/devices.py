"""Device -> onnxruntime execution providers.

`auto` takes the CUDA execution provider when onnxruntime-gpu is installed and the NVIDIA driver reports a
GPU, else the CPU: the GPU serving image started on a host without a GPU (or without `--gpus`) serves on
the CPU. An explicit `cuda` that cannot be honoured is an error: onnxruntime itself would silently fall
back to the CPU, so `OnnxRuntimeGraph` also checks the provider actually in use once the session is built.
"""

from __future__ import annotations

import ctypes
import functools

import onnxruntime as ort

from vreyesam.runtime.engines.graph import DeviceUnavailable
from vreyesam.runtime.vocabulary import DEVICES, Device

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


@functools.cache
def cuda_device_count() -> int:
    """GPUs the NVIDIA driver reports (0 without the driver: the CUDA wheels alone do not make a GPU)."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def _cuda_usable() -> bool:
    if CUDA_PROVIDER not in ort.get_available_providers() or cuda_device_count() == 0:
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
            "device 'cuda' requested but no GPU is usable here (the [gpu] extra, onnxruntime-gpu, an NVIDIA "
            "driver and a GPU given to the container, e.g. `docker run --gpus all`)"
        )
    return [CPU_PROVIDER]
