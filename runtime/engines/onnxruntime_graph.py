"""A graph on onnxruntime (CPU or CUDA execution provider), built from model bytes, run through IO binding.

Every run binds its inputs and outputs explicitly: inputs are host arrays or OrtValues a graph produced
(on the CUDA provider they stay in GPU memory between graphs), outputs are allocated on the provider's
device, and only what the caller fetches is computed and kept. `to_host` is the one place a device value
is copied back. The CPU provider takes the very same path, with the device being host memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from vreyesam.runtime.engines.devices import CPU_PROVIDER
from vreyesam.runtime.engines.graph import DeviceUnavailable, Rows, Value, host_rows


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

    def run(
        self,
        feeds: Mapping[str, Value],
        fetch: Sequence[str] | None = None,
        into: Mapping[str, Rows] | None = None,
    ) -> dict[str, Value]:
        into = into or {}
        binding = self._session.io_binding()
        for name, value in feeds.items():
            if isinstance(value, Rows):
                binding.bind_input(name, *_rows_buffer(value))
            elif isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(name, value)
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        names = self._outputs if fetch is None else tuple(fetch)
        for name in names:
            if name in into:
                binding.bind_output(name, *_rows_buffer(into[name]))
            else:
                binding.bind_output(name, self._device)
        self._session.run_with_iobinding(binding)
        made = dict(zip(names, binding.get_outputs(), strict=True))
        return {name: into.get(name, value) for name, value in made.items()}

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Value:
        if self._device == "cpu":
            return np.empty(shape, dtype)
        return ort.OrtValue.ortvalue_from_shape_and_type(shape, np.dtype(dtype).type, self._device, 0)

    def to_host(self, value: Value) -> np.ndarray:
        if isinstance(value, Rows):
            return host_rows(value, self.to_host(value.base))
        return value.numpy() if isinstance(value, ort.OrtValue) else np.asarray(value)


def _rows_buffer(rows: Rows) -> tuple[str, int, np.dtype[Any], tuple[int, ...], int]:
    """Where `rows` lie, as IO binding takes a buffer: device, device id, element type, shape, address."""
    base = rows.base
    if isinstance(base, ort.OrtValue):
        shape, dtype = tuple(base.shape()), _NUMPY_TYPES[base.data_type()]
        device, address = base.device_name().lower(), base.data_ptr()
    else:
        if not (isinstance(base, np.ndarray) and base.flags.c_contiguous):
            raise TypeError("Rows of a host value need a C-contiguous numpy array")
        shape, dtype, device, address = base.shape, base.dtype, "cpu", base.ctypes.data
    if rows.start < 0 or rows.count < 1 or rows.start + rows.count > shape[0]:
        raise IndexError(f"rows {rows.start}..{rows.start + rows.count} of a batch of {shape[0]}")
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    return device, 0, np.dtype(dtype), (rows.count, *shape[1:]), address + rows.start * row_bytes


# OrtValue.data_type() names, for the element types the graphs exchange.
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}
