"""The protocol every engine implements, and the errors engines raise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

# A tensor as an engine holds it: a numpy array on the host, or an engine's device-resident value
# (e.g. an onnxruntime OrtValue in GPU memory). Stages pass values between graphs without looking inside.
Value = Any


class Graph(Protocol):
    """One loaded ONNX graph, safe to run from several threads at once."""

    @property
    def engine(self) -> str:
        """What runs it, e.g. `CPUExecutionProvider`, `CUDAExecutionProvider`, `OpenVINO-CPU-bf16`.

        Graphs with the same engine take each other's values as they are; between engines a value goes
        through the host (`to_host`)."""
        ...

    @property
    def outputs(self) -> tuple[str, ...]:
        """The graph's output names, in order."""
        ...

    def run(self, feeds: Mapping[str, Value], fetch: Sequence[str] | None = None) -> dict[str, Value]:
        """The fetched outputs (all when None) by name, for inputs by name: host arrays or this engine's
        values. Outputs stay where the engine computed them."""
        ...

    def to_host(self, value: Value) -> np.ndarray:
        """A value as a host numpy array (a no-op for values already on the host)."""
        ...


class DeviceUnavailable(Exception):
    """The requested device or execution provider cannot be used on this machine."""


class EngineUnavailable(Exception):
    """The engine a graph needs is not installed, or this machine lacks what it needs (e.g. native bf16)."""
