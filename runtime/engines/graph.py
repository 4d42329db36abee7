"""The protocol every engine implements, and the errors engines raise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# A tensor as an engine holds it: a numpy array on the host, or an engine's device-resident value
# (e.g. an onnxruntime OrtValue in GPU memory). Stages pass values between graphs without looking inside.
Value = Any


@dataclass(frozen=True)
class Rows:
    """Rows `start` to `start + count` of a value whose first axis is the batch: a view, never a copy.

    A batch of images shares one encoder run through views: each image's preprocessing writes its row of a
    batch value (`run(..., into=...)`), the encoder reads the filled rows, and each image's decoder reads its
    own row of the encoder's outputs. `base` is a value of the engine that made it (`allocate` or `run`).
    """

    base: Value
    start: int
    count: int = 1


def rows_of(value: Value, start: int, count: int = 1) -> Rows:
    """Rows of a value, or of the rows a `Rows` already names (views of views stay one view)."""
    if isinstance(value, Rows):
        if start + count > value.count:
            raise IndexError(f"rows {start}..{start + count} of {value.count}")
        return Rows(value.base, value.start + start, count)
    return Rows(value, start, count)


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

    def run(
        self,
        feeds: Mapping[str, Value],
        fetch: Sequence[str] | None = None,
        into: Mapping[str, Rows] | None = None,
    ) -> dict[str, Value]:
        """The fetched outputs (all when None) by name, for inputs by name: host arrays, this engine's values
        or `Rows` of them. Outputs stay where the engine computed them; those named in `into` are written in
        place into rows of a value this engine allocated (and returned as those `Rows`)."""
        ...

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Value:
        """An uninitialised value on this engine's device, for `Rows` to be written into."""
        ...

    def to_host(self, value: Value) -> np.ndarray:
        """A value (or `Rows` of one) as a host numpy array (a no-op for values already on the host)."""
        ...

    def write(self, array: np.ndarray, into: Rows) -> None:
        """Copy a host array into rows of a value this engine allocated, in place (its address unchanged)."""
        ...


def host_rows(rows: Rows, base_on_host: np.ndarray) -> np.ndarray:
    """The rows of a base value already on the host (a numpy view)."""
    return base_on_host[rows.start : rows.start + rows.count]


class DeviceUnavailable(Exception):
    """The requested device or execution provider cannot be used on this machine."""


class EngineUnavailable(Exception):
    """The engine a graph needs is not installed, or this machine lacks what it needs (e.g. native bf16)."""
