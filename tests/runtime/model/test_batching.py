"""Encoder batching on onnxruntime's CPU provider: images that share an encoder run get exactly the results
they get alone, and nothing one seated image does (a bad prompt, a failed run) stalls or corrupts another.
A batch between two fixed sizes runs padded to the larger, and its rows are the larger session's own.

Batches here close because they are full (a window of a minute never passes) or because their window is
zero: the tests synchronise on the batch, never on how long inference takes.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from tests.model_files import open_model_files
from vreyesam.runtime.engines.graph import Graph, Rows, rows_of
from vreyesam.runtime.engines.onnxruntime_graph import OnnxRuntimeGraph, SessionConfig
from vreyesam.runtime.engines.shaped import ShapedGraph
from vreyesam.runtime.manifest import (
    ENCODER,
    ENCODER_BATCH_AXIS,
    ENCODER_INPUT,
    ENCODER_OUTPUTS,
    PREPROCESS_INPUT,
    PREPROCESS_OUTPUT,
)
from vreyesam.runtime.model import preprocess
from vreyesam.runtime.model.agreement import relative_error
from vreyesam.runtime.model.batching import BatchPolicy, BatchRunFailed
from vreyesam.runtime.model.procedure import PromptOutsideImage
from vreyesam.runtime.model.segmenter import Prediction, PredictOptions, Segmenter, rebuilt
from vreyesam.runtime.tools.synth import generate

NEVER_MS = 60_000.0  # a window no test waits out: a batch closes when it is full


CPU = ["CPUExecutionProvider"]
CONFIG = SessionConfig(intra_op_threads=2)


@pytest.fixture(scope="module")
def encoder_bytes(model_dir: Path) -> bytes:
    return open_model_files(model_dir, roles=(ENCODER,)).take_graph(ENCODER)


@pytest.fixture(scope="module")
def any_batch_encoder(encoder_bytes: bytes) -> Graph:
    """The fp32 encoder with a free batch axis: what the loader builds on the CPU when batching is on."""
    return OnnxRuntimeGraph(encoder_bytes, CPU, CONFIG)


def batched(segmenter: Segmenter, policy: BatchPolicy, encoder: Any) -> Segmenter:
    """The session's fp32 CPU model with this encoder and encoder batching (its other graphs shared)."""
    return rebuilt(segmenter, encoder=encoder, encoder_batch=policy)


@pytest.fixture(scope="module")
def eyes() -> list[np.ndarray]:
    # Three sizes, so that the rows of a batch come from differently fitted images.
    sizes = [(400, 300), (240, 320), (333, 250)]
    return [generate(seed=30 + i, n=1, width=w, height=h)[0][1] for i, (w, h) in enumerate(sizes)]


OPTIONS = PredictOptions(points=3, keep_logits=True)


@pytest.fixture(scope="module")
def alone(segmenter: Segmenter, any_batch_encoder: Graph, eyes: list[np.ndarray]) -> list[Prediction]:
    model = batched(segmenter, BatchPolicy(max_images=1), any_batch_encoder)  # max 1: unbatched
    return [model.predict(eye, OPTIONS) for eye in eyes]


def assert_identical(got: Prediction, expected: Prediction) -> None:
    assert got.low_res_logits is not None and expected.low_res_logits is not None
    assert np.array_equal(got.low_res_logits, expected.low_res_logits)  # bit for bit
    assert np.array_equal(got.scores, expected.scores)
    for name in ("binary", "probability", "uncertainty"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name
    assert got.statistics == expected.statistics


def test_images_in_one_batch_get_their_results_alone_bit_for_bit(
    segmenter: Segmenter, any_batch_encoder: Graph, eyes: list[np.ndarray], alone: list[Prediction]
) -> None:
    model = batched(segmenter, BatchPolicy(max_images=len(eyes), window_ms=NEVER_MS), any_batch_encoder)
    with ThreadPoolExecutor(len(eyes)) as pool:
        together = list(pool.map(lambda eye: model.predict(eye, OPTIONS), eyes))
    assert model.batches is not None
    assert (model.batches.runs, model.batches.images) == (1, 3)  # one encoder run for the three
    for got, expected in zip(together, alone, strict=True):
        assert_identical(got, expected)
        assert got.encoder_batch_images == 3 and expected.encoder_batch_images == 1
        # The shared run is engine time for each image it was waited for: `host` stays what the host did.
        host = got.timings.as_dict()["host"]
        assert 0.0 <= host < dict(got.timings.stages)["encoder"]


def test_a_window_closes_a_batch_that_is_not_full(
    segmenter: Segmenter, any_batch_encoder: Graph, eyes: list[np.ndarray], alone: list[Prediction]
) -> None:
    model = batched(segmenter, BatchPolicy(max_images=4, window_ms=0.0), any_batch_encoder)
    assert_identical(model.predict(eyes[0], OPTIONS), alone[0])
    assert model.batches is not None and (model.batches.runs, model.batches.images) == (1, 1)


def test_a_bad_prompt_does_not_stall_or_change_the_others(
    segmenter: Segmenter, any_batch_encoder: Graph, eyes: list[np.ndarray], alone: list[Prediction]
) -> None:
    model = batched(segmenter, BatchPolicy(max_images=2, window_ms=NEVER_MS), any_batch_encoder)
    outside = PredictOptions(explicit_points=np.array([[10_000.0, 5.0]]))
    with ThreadPoolExecutor(2) as pool:
        refused = pool.submit(model.predict, eyes[2], outside)
        served = pool.submit(model.predict, eyes[1], OPTIONS)
        with pytest.raises(PromptOutsideImage):
            refused.result()
        assert_identical(served.result(), alone[1])
    assert model.batches is not None and (model.batches.runs, model.batches.images) == (1, 2)


class FailingEncoder:
    """The real encoder, whose runs fail once `broken` is set (an engine error during a batch)."""

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder
        self.broken = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def run(self, feeds: Any, fetch: Any = None, into: Any = None) -> Any:
        if self.broken.is_set():
            raise RuntimeError("the engine failed")
        return self._encoder.run(feeds, fetch)


def test_a_failed_batch_fails_every_image_in_it_and_the_next_batch_runs(
    segmenter: Segmenter, any_batch_encoder: Graph, eyes: list[np.ndarray], alone: list[Prediction]
) -> None:
    encoder = FailingEncoder(any_batch_encoder)
    model = batched(segmenter, BatchPolicy(max_images=2, window_ms=NEVER_MS), encoder)
    encoder.broken.set()
    with ThreadPoolExecutor(2) as pool:
        failed = [pool.submit(model.predict, eye, OPTIONS) for eye in eyes[:2]]
        errors = []
        for future in failed:
            with pytest.raises(BatchRunFailed, match="batch failed: the engine failed") as raised:
                future.result()
            assert isinstance(raised.value.__cause__, RuntimeError)  # the engine's own error is its cause
            errors.append(raised.value)
    assert errors[0] is not errors[1]  # each image raises its own error, in its own thread
    encoder.broken.clear()
    with ThreadPoolExecutor(2) as pool:
        again = list(pool.map(lambda eye: model.predict(eye, OPTIONS), eyes[:2]))
    for got, expected in zip(again, alone[:2], strict=True):
        assert_identical(got, expected)


def test_preprocessing_writes_a_row_of_a_batch_in_place(segmenter: Segmenter, eyes: list[np.ndarray]) -> None:
    graph = segmenter.preprocess
    fitted = preprocess.fit_image(eyes[0], segmenter.manifest.preprocessing.fit_size)
    plain = graph.to_host(graph.run({PREPROCESS_INPUT: fitted})[PREPROCESS_OUTPUT])
    size = segmenter.manifest.preprocessing.image_size
    batch = graph.allocate((3, 3, size, size), np.dtype(np.float32))
    graph.to_host(batch)[:] = -7.0
    written = graph.run({PREPROCESS_INPUT: fitted}, into={PREPROCESS_OUTPUT: Rows(batch, 1)})
    assert written[PREPROCESS_OUTPUT] == Rows(batch, 1)
    rows = graph.to_host(batch)
    assert np.array_equal(rows[1:2], plain)
    assert (rows[0] == -7.0).all() and (rows[2] == -7.0).all()  # its neighbours untouched
    with pytest.raises(IndexError):
        graph.run({PREPROCESS_INPUT: fitted}, into={PREPROCESS_OUTPUT: Rows(batch, 3)})


def test_rows_of_an_engine_value_are_bound_by_address(segmenter: Segmenter, eyes: list[np.ndarray]) -> None:
    """The GPU's way (a batch allocated as an OrtValue, bound at an offset), on the CPU's memory."""
    graph = segmenter.preprocess
    fitted = preprocess.fit_image(eyes[1], segmenter.manifest.preprocessing.fit_size)
    plain = graph.to_host(graph.run({PREPROCESS_INPUT: fitted})[PREPROCESS_OUTPUT])
    size = segmenter.manifest.preprocessing.image_size
    batch = ort.OrtValue.ortvalue_from_numpy(np.full((2, 3, size, size), -7.0, np.float32))
    graph.run({PREPROCESS_INPUT: fitted}, into={PREPROCESS_OUTPUT: Rows(batch, 1)})
    assert np.array_equal(graph.to_host(Rows(batch, 1)), plain)
    assert (graph.to_host(Rows(batch, 0)) == -7.0).all()


def test_a_batch_between_fixed_sizes_runs_padded_to_the_larger(
    segmenter: Segmenter, encoder_bytes: bytes, eyes: list[np.ndarray]
) -> None:
    """Three images in a batch value with room for 4, and sessions fixed to 2 and 4 images (the GPU's
    layout): the run takes the 4-image session over the first four rows, answers with views of the three
    rows asked for, and those are that session's own rows (the fourth, never written, changes none)."""
    fixed = {
        size: OnnxRuntimeGraph(encoder_bytes, CPU, replace(CONFIG, fixed_dims=((ENCODER_BATCH_AXIS, size),)))
        for size in (2, 4)
    }
    encoder = ShapedGraph(axis_input=ENCODER_INPUT, fixed=fixed, pad=True)
    size = segmenter.manifest.preprocessing.image_size
    batch = np.full((4, 3, size, size), np.nan, np.float32)  # the fourth row is never written
    for row, eye in enumerate(eyes):
        fitted = preprocess.fit_image(eye, segmenter.manifest.preprocessing.fit_size)
        segmenter.preprocess.run({PREPROCESS_INPUT: fitted}, into={PREPROCESS_OUTPUT: Rows(batch, row)})
    three = Rows(batch, 0, 3)
    assert encoder.session_for({ENCODER_INPUT: three}) == (fixed[4], 4)
    padded = encoder.run({ENCODER_INPUT: three})
    clean = batch.copy()
    clean[3] = 0.0
    direct = fixed[4].run({ENCODER_INPUT: clean})
    for name in ENCODER_OUTPUTS:
        assert padded[name] == Rows(padded[name].base, 0, 3), name
        assert np.array_equal(encoder.to_host(padded[name]), fixed[4].to_host(direct[name])[:3]), name
    pair = fixed[2].run({ENCODER_INPUT: batch[:2]})  # another session: equal to its rounding
    for name in ENCODER_OUTPUTS:
        expected = fixed[2].to_host(pair[name])[1]
        assert relative_error(encoder.to_host(rows_of(padded[name], 1))[0], expected) < 1e-5, name
    with pytest.raises(ValueError, match="no session for 3"):
        encoder.run({ENCODER_INPUT: batch[:3]})  # a host array has no room to pad into
