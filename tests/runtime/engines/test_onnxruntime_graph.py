"""The onnxruntime graph's own mechanics, on the CPU provider: where `Rows` are bound (address, shape, bounds),
values held as OrtValues the way a GPU holds them (allocated, written whole, read back), and runs that take
their inputs and outputs by address."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.model_files import open_model_files
from vreyesam.runtime.engines.graph import Rows, rows_of
from vreyesam.runtime.engines.onnxruntime_graph import OnnxRuntimeGraph, SessionConfig, _rows_buffer
from vreyesam.runtime.manifest import PREPROCESS, PREPROCESS_INPUT, PREPROCESS_OUTPUT


def test_rows_of_a_host_array_are_its_rows_by_address() -> None:
    batch = np.zeros((4, 3, 5), np.float32)
    device, device_id, dtype, shape, address = _rows_buffer(Rows(batch, 1, 2))
    assert (device, device_id, dtype, shape) == ("cpu", 0, np.dtype(np.float32), (2, 3, 5))
    assert address == batch.ctypes.data + 1 * 3 * 5 * 4  # one row of 15 float32 further
    assert np.shares_memory(batch[1:3], np.ndarray(shape, dtype, buffer=batch, offset=address - batch.ctypes.data))


def test_rows_of_an_ortvalue_are_its_rows_by_address() -> None:
    value = ort.OrtValue.ortvalue_from_numpy(np.arange(24, dtype=np.float32).reshape(4, 6))
    device, _, dtype, shape, address = _rows_buffer(Rows(value, 3))
    assert (device, dtype, shape) == ("cpu", np.dtype(np.float32), (1, 6))
    assert address == value.data_ptr() + 3 * 6 * 4


@pytest.mark.parametrize(("start", "count"), [(-1, 1), (0, 0), (3, 2), (4, 1)])
def test_rows_outside_their_value_are_refused(start: int, count: int) -> None:
    with pytest.raises(IndexError):
        _rows_buffer(Rows(np.zeros((4, 2), np.float32), start, count))


def test_rows_of_rows_stay_one_view() -> None:
    batch = np.zeros((8, 2), np.float32)
    assert rows_of(Rows(batch, 2, 4), 1, 2) == Rows(batch, 3, 2)
    with pytest.raises(IndexError):
        rows_of(Rows(batch, 2, 4), 3, 2)
    assert _rows_buffer(Rows(batch, 2, 4))[2:4] == (np.dtype(np.float32), (4, 2))


def test_rows_of_a_strided_host_array_are_refused() -> None:
    with pytest.raises(TypeError, match="C-contiguous"):
        _rows_buffer(Rows(np.zeros((4, 6), np.float32)[:, ::2], 0))


@pytest.fixture(scope="module")
def preprocess(model_dir: Path) -> OnnxRuntimeGraph:
    graph = open_model_files(model_dir, roles=(PREPROCESS,)).take_graph(PREPROCESS)
    return OnnxRuntimeGraph(graph, ["CPUExecutionProvider"], SessionConfig(intra_op_threads=1))


def test_an_ortvalue_batch_is_written_read_and_run_into_by_address(preprocess: OnnxRuntimeGraph) -> None:
    """The GPU's way on the CPU's memory: a batch allocated as an engine value, a row written from the host
    (`write`), a run writing its output into another row, each read back."""
    fitted = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    alone = preprocess.to_host(preprocess.run({PREPROCESS_INPUT: fitted})[PREPROCESS_OUTPUT])
    size = alone.shape[-1]
    value = ort.OrtValue.ortvalue_from_shape_and_type((2, 3, size, size), np.float32, "cpu", 0)
    preprocess.write(np.full((2, 3, size, size), -1.0, np.float32), Rows(value, 0, 2))
    preprocess.run({PREPROCESS_INPUT: fitted}, into={PREPROCESS_OUTPUT: Rows(value, 1)})
    assert np.array_equal(preprocess.to_host(Rows(value, 1)), alone)
    assert (preprocess.to_host(Rows(value, 0)) == -1.0).all()
    with pytest.raises(ValueError, match="written whole"):
        preprocess.write(alone, Rows(value, 1))
