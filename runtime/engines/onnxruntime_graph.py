"""A graph on onnxruntime (CPU or CUDA execution provider), built from model bytes, run through IO binding.

Every run binds its inputs and outputs explicitly: inputs are host arrays or OrtValues a graph produced
(on the CUDA provider they stay in GPU memory between graphs), outputs are allocated on the provider's
device, and only what the caller fetches is computed and kept. `to_host` is the one place a device value
is copied back. The CPU provider takes the very same path, with the device being host memory.

A session may be specialised to fixed sizes of the graph's free dimensions (`SessionConfig.fixed_dims`):
onnxruntime then folds every `Shape` and the arithmetic on it into constants at load, so no small integer
node is left for the CPU provider beside a GPU graph (each such node costs a copy and a synchronisation),
and a CUDA graph can be captured (`cuda_graph`: replayed on the same input and output addresses, which
the caller keeps fixed; see `model.capture`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from vreyesam.runtime.engines.devices import CPU_PROVIDER, CUDA_PROVIDER
from vreyesam.runtime.engines.graph import DeviceUnavailable, Rows, Value, host_rows


@dataclass(frozen=True)
class SessionConfig:
    intra_op_threads: int = 0  # 0: onnxruntime's default (one per physical core)
    # Off: the CPU arena bought a little speed for a much higher peak RSS (docs/performance.md, "Engine settings").
    cpu_memory_arena: bool = False
    # Off: idle intra-op threads spinning for work stole the CPU from the next stage (same section).
    spin_wait: bool = False
    # Free dimensions fixed to these sizes, e.g. (("prompts", 30),): the shape arithmetic folds at load.
    fixed_dims: tuple[tuple[str, int], ...] = ()
    # Capture the graph in a CUDA graph on its first runs and replay it after (CUDA provider, fixed shapes).
    cuda_graph: bool = False


# onnxruntime graph rewrites that made these graphs slower on the CPU provider (docs/performance.md, "Engine
# settings": with fixed shapes, the decoder's Add + LayerNormalization pairs fused into SkipLayerNormalization).
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def session_options(config: SessionConfig) -> ort.SessionOptions:
    """The session options of a graph built with `config` (also what the tests inspect graphs with)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings from graph clean-up are noise in service logs
    if config.intra_op_threads > 0:
        options.intra_op_num_threads = config.intra_op_threads
    options.enable_cpu_mem_arena = config.cpu_memory_arena
    if not config.spin_wait:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for name, size in config.fixed_dims:
        options.add_free_dimension_override_by_name(name, size)
    return options


def provider_entries(providers: list[str], config: SessionConfig) -> list[Any]:
    """The providers as onnxruntime takes them, with the CUDA provider's options."""
    if not config.cuda_graph:
        return list(providers)
    if providers[0] != CUDA_PROVIDER:
        raise DeviceUnavailable("CUDA graphs need the CUDA execution provider")
    return [(CUDA_PROVIDER, {"enable_cuda_graph": "1"}), *providers[1:]]


def disabled_optimizers(providers: list[str]) -> list[str]:
    return list(CPU_DISABLED_OPTIMIZERS) if providers[0] == CPU_PROVIDER else []


class OnnxRuntimeGraph:
    """An InferenceSession behind the `Graph` protocol. Built from bytes, never a path: an encrypted
    model is decrypted into memory, and the bytes are the ones whose sha256 was checked."""

    def __init__(self, model: bytes, providers: list[str], config: SessionConfig) -> None:
        self._session = ort.InferenceSession(
            model,
            sess_options=session_options(config),
            providers=provider_entries(providers, config),
            disabled_optimizers=disabled_optimizers(providers),
        )
        active = self._session.get_providers()[0]
        if active != providers[0]:
            raise DeviceUnavailable(f"{providers[0]} was requested but onnxruntime chose {active}")
        self._device = "cpu" if active == CPU_PROVIDER else "cuda"
        self._outputs = tuple(output.name for output in self._session.get_outputs())
        self.fixed_dims = dict(config.fixed_dims)
        self._captured = config.cuda_graph
        # Runs of one session on a GPU take turns. Concurrent runs of one CUDA session share its memory
        # arena and compete for the device; 8 callers at once were much slower in total than one
        # (docs/performance.md). Taking turns bounds every caller count at one caller's rate, while
        # different sessions (one image's encoder, another's decoder) still run side by side. A captured
        # graph must take turns anyway: its replays share one set of buffers. CPU runs share the cores well.
        self._turns: threading.Lock | None = threading.Lock() if self._device == "cuda" else None

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
        with self._turns or nullcontext():
            if self._captured:  # inputs written from the host (`write`) have landed before a replay reads them
                binding.synchronize_inputs()
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

    def write(self, array: np.ndarray, into: Rows) -> None:
        base = into.base
        if isinstance(base, np.ndarray):
            np.copyto(host_rows(into, base), array)
            return
        if into.start != 0 or into.count != base.shape()[0]:
            raise ValueError("an engine value is written whole")
        base.update_inplace(np.ascontiguousarray(array, dtype=_NUMPY_TYPES[base.data_type()]))


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
_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}
