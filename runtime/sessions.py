"""onnxruntime sessions: execution-provider choice and session creation.

`auto` takes the CUDA execution provider when onnxruntime-gpu and a GPU are present, else the CPU.
An explicit `cuda` that cannot be honoured is an error: onnxruntime itself would silently fall back to
the CPU, so the provider actually in use is checked after the session is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import onnxruntime as ort

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[Device, ...] = ("auto", "cpu", "cuda")
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


class InferenceGraph(Protocol):
    """What the procedure needs from a loaded graph: an onnxruntime session, or runtime.openvino_sessions."""

    def run(self, output_names: None, input_feed: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def get_providers(self) -> list[str]: ...


class DeviceUnavailable(Exception):
    """The requested execution provider cannot be used on this machine."""


@dataclass(frozen=True)
class SessionConfig:
    device: Device = "auto"
    intra_op_threads: int = 0  # 0: onnxruntime's default (one per physical core)
    # The CPU arena tripled peak RSS for ~15% speed in measurements here; off by default.
    cpu_memory_arena: bool = False
    # Idle intra-op threads spinning for work stole the CPU from the next stage (OpenVINO's encoder, the
    # host-side ensemble): with spinning off the ensemble took 26 ms instead of ~200 ms on 2 cores.
    spin_wait: bool = False


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


def create_session(model: bytes, providers: list[str], config: SessionConfig) -> ort.InferenceSession:
    """Build a session from model bytes (never a path: encrypted models are decrypted into memory)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings from graph clean-up are noise in service logs
    if config.intra_op_threads > 0:
        options.intra_op_num_threads = config.intra_op_threads
    options.enable_cpu_mem_arena = config.cpu_memory_arena
    if not config.spin_wait:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model, sess_options=options, providers=providers)
    active = session.get_providers()[0]
    if active != providers[0]:
        raise DeviceUnavailable(f"{providers[0]} was requested but onnxruntime chose {active}")
    return session


def active_provider(session: ort.InferenceSession) -> str:
    return str(session.get_providers()[0])
