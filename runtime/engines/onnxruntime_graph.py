"""A graph on onnxruntime (CPU or CUDA execution provider), built from model bytes, run through IO binding.

Every run binds its inputs and outputs explicitly: inputs are host arrays or OrtValues a graph produced
(on the CUDA provider they stay in GPU memory between graphs), outputs are allocated on the provider's
device, and only what the caller fetches is computed and kept. `to_host` is the one place a device value
is copied back. The CPU provider takes the very same path, with the device being host memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from vreyesam.runtime.engines.devices import CPU_PROVIDER
from vreyesam.runtime.engines.graph import DeviceUnavailable, Value


@dataclass(frozen=True)
class SessionConfig:
    intra_op_threads: int = 0  # 0: onnxruntime's default (one per physical core)
    # The CPU arena tripled peak RSS for ~15% speed in measurements here; off by default.
    cpu_memory_arena: bool = False
    # Idle intra-op threads spinning for work stole the CPU from the next stage (OpenVINO's encoder, the
    # host-side ensemble): with spinning off the ensemble took 26 ms instead of ~200 ms on 2 cores.
    spin_wait: bool = False


class OnnxRuntimeGraph:
    """An InferenceSession behind the `Graph` protocol. Built from bytes, never a path: an encrypted
    model is decrypted into memory, and the bytes are the ones whose sha256 was checked."""

    def __init__(self, model: bytes, providers: list[str], config: SessionConfig) -> None:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings from graph clean-up are noise in service logs
        if config.intra_op_threads > 0:
            options.intra_op_num_threads = config.intra_op_threads
        options.enable_cpu_mem_arena = config.cpu_memory_arena
        if not config.spin_wait:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(model, sess_options=options, providers=providers)
        active = self._session.get_providers()[0]
        if active != providers[0]:
            raise DeviceUnavailable(f"{providers[0]} was requested but onnxruntime chose {active}")
        self._device = "cpu" if active == CPU_PROVIDER else "cuda"
        self._outputs = tuple(output.name for output in self._session.get_outputs())

    @property
    def engine(self) -> str:
        return str(self._session.get_providers()[0])

    @property
    def outputs(self) -> tuple[str, ...]:
        return self._outputs

    def run(self, feeds: Mapping[str, Value], fetch: Sequence[str] | None = None) -> dict[str, Value]:
        binding = self._session.io_binding()
        for name, value in feeds.items():
            if isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(name, value)
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        names = self._outputs if fetch is None else tuple(fetch)
        for name in names:
            binding.bind_output(name, self._device)
        self._session.run_with_iobinding(binding)
        return dict(zip(names, binding.get_outputs(), strict=True))

    def to_host(self, value: Value) -> np.ndarray:
        return value.numpy() if isinstance(value, ort.OrtValue) else np.asarray(value)
