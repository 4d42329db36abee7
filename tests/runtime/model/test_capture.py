"""The captured path for lone images (model.capture) on onnxruntime's CPU provider, where it runs uncaptured.

What a CUDA graph needs is checked here where it can be: every run of the captured networks binds the very
same addresses, whatever the image; their answers are the ordinary sessions' answers; concurrent callers
take turns on the buffers; any other request goes around them; and the loader's agreement check refuses a
capture that answers differently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.model_files import open_model_files
from vreyesam.runtime.engines.graph import Graph, Rows, Value
from vreyesam.runtime.engines.onnxruntime_graph import OnnxRuntimeGraph, SessionConfig
from vreyesam.runtime.manifest import DECODER, DECODER_PROMPT_AXIS, ENCODER, ENCODER_BATCH_AXIS
from vreyesam.runtime.model.agreement import relative_error
from vreyesam.runtime.model.batching import BatchPolicy
from vreyesam.runtime.model.capture import Capture
from vreyesam.runtime.model.loader import LoadOptions, _capture_agrees, load_segmenter
from vreyesam.runtime.model.segmenter import Prediction, PredictOptions, Segmenter, with_capture
from vreyesam.runtime.tools.synth import generate

PROMPTS = 4  # the captured prompt count in these tests (the model's default is 30: slower on a CPU)
OPTIONS = PredictOptions(points=PROMPTS)


def address(value: Value) -> int:
    """Where a bound value starts in memory (these tests run on the CPU: numpy arrays)."""
    if isinstance(value, Rows):
        row_bytes = value.base[0].nbytes
        return int(value.base.ctypes.data) + value.start * row_bytes
    return int(np.asarray(value).ctypes.data)


class Recording:
    """A graph that records the addresses of what each run reads and writes."""

    def __init__(self, graph: Graph) -> None:
        self._graph = graph
        self.runs: list[dict[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._graph, name)

    def run(
        self, feeds: Mapping[str, Value], fetch: Sequence[str] | None = None, into: Mapping[str, Rows] | None = None
    ) -> dict[str, Value]:
        bound = {f"in:{name}": address(value) for name, value in feeds.items()}
        bound.update({f"out:{name}": address(rows) for name, rows in (into or {}).items()})
        self.runs.append(bound)
        return self._graph.run(feeds, fetch, into)


@pytest.fixture(scope="module")
def captured(model_dir: Path, segmenter: Segmenter) -> tuple[Segmenter, Recording, Recording]:
    files = open_model_files(model_dir, roles=(ENCODER, DECODER))
    config = SessionConfig(intra_op_threads=2)
    encoder = Recording(
        OnnxRuntimeGraph(
            files.take_graph(ENCODER), ["CPUExecutionProvider"], replace(config, fixed_dims=((ENCODER_BATCH_AXIS, 1),))
        )
    )
    decoder = Recording(
        OnnxRuntimeGraph(
            files.take_graph(DECODER),
            ["CPUExecutionProvider"],
            replace(config, fixed_dims=((DECODER_PROMPT_AXIS, PROMPTS),)),
        )
    )
    size = segmenter.manifest.preprocessing.image_size
    capture = Capture(encoder=encoder, decoder=decoder, prompts=PROMPTS, image_size=size, warm_up_runs=0)
    return with_capture(segmenter, capture), encoder, decoder


@pytest.fixture(scope="module")
def eyes() -> list[np.ndarray]:
    return [generate(seed=40 + i, n=1, width=w, height=h)[0][1] for i, (w, h) in enumerate([(400, 300), (240, 320)])]


@pytest.fixture(scope="module")
def ordinary(segmenter: Segmenter, eyes: list[np.ndarray]) -> list[Prediction]:
    return [segmenter.predict(eye, OPTIONS) for eye in eyes]


def agree(got: Prediction, expected: Prediction) -> None:
    assert got.low_res_logits is not None and expected.low_res_logits is not None
    # The captured decoder takes the prompts at once, the CPU's ordinary one a prompt per call: float32 rounding.
    assert relative_error(got.low_res_logits, expected.low_res_logits) < 1e-6
    assert np.allclose(got.scores, expected.scores, atol=1e-6)
    assert np.array_equal(got.binary, expected.binary)
    assert got.statistics == expected.statistics


def test_the_captured_path_answers_as_the_ordinary_one_on_the_same_addresses_every_time(
    captured: tuple[Segmenter, Recording, Recording], eyes: list[np.ndarray], ordinary: list[Prediction]
) -> None:
    model, encoder, decoder = captured
    assert model.cuda_graphs == "on"
    encoder.runs.clear()
    decoder.runs.clear()
    for eye, expected in zip(eyes, ordinary, strict=True):
        agree(model.predict(eye, OPTIONS), expected)
    assert len(encoder.runs) == len(decoder.runs) == len(eyes)
    # What a replay needs: each network read and wrote the same places on every run, whatever the image.
    for runs in (encoder.runs, decoder.runs):
        assert all(run == runs[0] for run in runs)
    # And the decoder reads the encoder's outputs where the encoder wrote them.
    assert decoder.runs[0]["in:image_tokens"] == encoder.runs[0]["out:image_tokens"]


def test_concurrent_callers_take_turns_on_the_buffers(
    captured: tuple[Segmenter, Recording, Recording], eyes: list[np.ndarray], ordinary: list[Prediction]
) -> None:
    model, _, _ = captured
    order = [0, 1, 0, 1]
    with ThreadPoolExecutor(len(order)) as pool:
        answers = list(pool.map(lambda index: model.predict(eyes[index], OPTIONS), order))
    for index, answer in zip(order, answers, strict=True):
        agree(answer, ordinary[index])


def test_other_prompt_counts_go_around_the_capture(
    captured: tuple[Segmenter, Recording, Recording], segmenter: Segmenter, eyes: list[np.ndarray]
) -> None:
    model, encoder, decoder = captured
    encoder.runs.clear()
    decoder.runs.clear()
    options = PredictOptions(points=PROMPTS + 1)
    got, expected = model.predict(eyes[0], options), segmenter.predict(eyes[0], options)
    assert encoder.runs == [] and decoder.runs == []
    assert np.array_equal(got.low_res_logits, expected.low_res_logits)


def test_the_agreement_check_refuses_a_capture_that_answers_differently(
    captured: tuple[Segmenter, Recording, Recording], eyes: list[np.ndarray]
) -> None:
    model, _, _ = captured
    tolerance = {"logits_relative_error": 1e-2, "final_mask_iou": 0.99}
    capture = model.capture
    assert capture is not None
    assert _capture_agrees(model, eyes[0], tolerance) is None
    stale = Capture.__new__(Capture)
    stale.__dict__.update(capture.__dict__)
    stale.decoder_run = lambda points: capture.decoder_run(points[::-1])  # type: ignore[method-assign]
    problem = _capture_agrees(with_capture(model, stale), eyes[0], tolerance)
    assert problem is not None and problem.startswith("the captured networks disagree with the ordinary sessions")


def test_capture_is_for_lone_images_on_one_engine(captured: tuple[Segmenter, Recording, Recording]) -> None:
    model, _, _ = captured
    with pytest.raises(ValueError, match="do not combine with encoder batching"):
        Segmenter(
            manifest=model.manifest,
            preprocess=model.preprocess,
            encoder=model.encoder,
            decoder=model.decoder,
            procedure=model.procedure,
            decoder_batch=1,
            encoder_batch=BatchPolicy(max_images=2),
            capture=model.capture,
        )


def test_the_cpu_serves_without_cuda_graphs_even_when_asked(model_dir: Path) -> None:
    options = LoadOptions(device="cpu", precision="fp32", allow_random_weights=True, self_test=False, cuda_graphs=True)
    assert load_segmenter(model_dir, options).cuda_graphs == "off"
