"""A graph compiled by OpenVINO for bf16 on the CPU, behind the `Graph` protocol.

onnxruntime's CPU provider has no bf16 kernels on x86; OpenVINO's CPU plugin runs the same ONNX graphs
in bf16 on CPUs with native bf16 units (AVX512_BF16 or AMX). It is used only where the CPU reports bf16
support: elsewhere OpenVINO would quietly compute in fp32 and the variant's label would be false.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vreyesam.runtime.engines.graph import EngineUnavailable, Rows, Value, host_rows

BF16_ENGINE = "OpenVINO-CPU-bf16"


def _core() -> Any:
    try:
        import openvino
    except ImportError:
        raise EngineUnavailable("the bf16 variants need OpenVINO (installed by the [cpu] extra)") from None
    return openvino.Core()


@functools.cache
def bf16_supported() -> bool:
    """True when OpenVINO is importable and its CPU plugin reports native bf16 (asked once per process)."""
    try:
        core = _core()
    except EngineUnavailable:
        return False
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoGraph:
    """A graph compiled for bf16 on the CPU; `run` is safe to call from several threads at once."""

    def __init__(self, model: bytes, threads: int) -> None:
        core = _core()
        if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise EngineUnavailable("this CPU has no native bf16 support (AVX512_BF16 or AMX)")
        import openvino

        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        # ONNX bytes are read in memory (an encrypted model is never written out in clear).
        graph = core.read_model(model, openvino.Tensor(np.empty(0, np.uint8)))
        # The graph's own output names, in order: compiling can give an output a second name (a fused node's).
        self._names = [output.get_any_name() for output in graph.outputs]
        self._compiled = core.compile_model(graph, "CPU", config)
        self._outputs = list(self._compiled.outputs)
        # Idle infer requests. A request holds its own intermediate buffers (hundreds of MB for the encoder)
        # and is not re-entrant, so there are as many as calls ever ran at once: one per thread instead would
        # grow with every worker thread the server happens to use.
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._created = 0
        self._lock = threading.Lock()

    @property
    def engine(self) -> str:
        return BF16_ENGINE

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self._names)

    @property
    def request_count(self) -> int:
        """Infer requests created so far (the most calls that ran at the same time)."""
        return self._created

    def _acquire(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                self._created += 1
            return self._compiled.create_infer_request()

    def run(
        self,
        feeds: Mapping[str, Value],
        fetch: Sequence[str] | None = None,
        into: Mapping[str, Rows] | None = None,
    ) -> dict[str, Value]:
        into = into or {}
        wanted = set(self._names if fetch is None else fetch)
        inputs = {name: self.to_host(value) if isinstance(value, Rows) else value for name, value in feeds.items()}
        request = self._acquire()
        try:
            results = request.infer(inputs)
            # Copied out: the request's buffers are reused by the next call.
            outputs = zip(self._names, self._outputs, strict=True)
            made = {name: np.array(results[output], copy=True) for name, output in outputs if name in wanted}
        finally:
            self._idle.put(request)
        for name, rows in into.items():
            np.copyto(self.to_host(rows), made[name])
        return {name: into.get(name, value) for name, value in made.items()}

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Value:
        return np.empty(shape, dtype)

    def to_host(self, value: Value) -> np.ndarray:
        if isinstance(value, Rows):
            return host_rows(value, np.asarray(value.base))
        return np.asarray(value)

    def write(self, array: np.ndarray, into: Rows) -> None:
        np.copyto(self.to_host(into), array)
