"""Sessions fixed to one size of a free axis, behind one `Graph` (engines.shaped), on the CPU provider.

A fixed size changes which kernels onnxruntime picks, not what is computed: the answers agree with the
general session's to float32 rounding (relative 1e-6), and the served pipeline's final masks are equal.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.model_files import open_model_files
from vreyesam.runtime.engines.graph import Rows
from vreyesam.runtime.engines.onnxruntime_graph import OnnxRuntimeGraph, SessionConfig
from vreyesam.runtime.engines.shaped import ShapedGraph, leading_size
from vreyesam.runtime.manifest import DECODER, DECODER_PROMPT_AXIS, ENCODER
from vreyesam.runtime.model.agreement import relative_error
from vreyesam.runtime.model.segmenter import PredictOptions, Segmenter, rebuilt
from vreyesam.runtime.tools.synth import generate

CPU = ["CPUExecutionProvider"]
CONFIG = SessionConfig(intra_op_threads=2)


@pytest.fixture(scope="module")
def graph_bytes(model_dir: Path) -> dict[str, bytes]:
    files = open_model_files(model_dir, roles=(ENCODER, DECODER))
    return {role: files.take_graph(role) for role in (ENCODER, DECODER)}


@pytest.fixture(scope="module")
def general(graph_bytes: dict[str, bytes]) -> dict[str, OnnxRuntimeGraph]:
    return {role: OnnxRuntimeGraph(model, CPU, CONFIG) for role, model in graph_bytes.items()}


def fixed_decoder(graph_bytes: dict[str, bytes], prompts: int) -> OnnxRuntimeGraph:
    return OnnxRuntimeGraph(graph_bytes[DECODER], CPU, replace(CONFIG, fixed_dims=((DECODER_PROMPT_AXIS, prompts),)))


@pytest.fixture(scope="module")
def image_side(segmenter: Segmenter) -> dict[str, np.ndarray]:
    _, eye, _ = generate(seed=3, n=1, width=320, height=240)[0]
    prepared = segmenter.prepare(eye)
    features = segmenter.encode(prepared)
    return {name: segmenter.encoder.to_host(value) for name, value in features.decoder_feed().items()}


def prompts(count: int) -> dict[str, np.ndarray]:
    points = np.random.default_rng(count).uniform(0, 1024, (count, 1, 2)).astype(np.float32)
    return {"point_coords": points, "point_labels": np.ones((count, 1), np.int32)}


@pytest.mark.parametrize("count", [1, 30])
def test_a_fixed_prompt_count_answers_as_the_general_session(
    graph_bytes: dict[str, bytes], general: dict[str, OnnxRuntimeGraph], image_side: dict[str, np.ndarray], count: int
) -> None:
    feeds = {**image_side, **prompts(count)}
    fixed = fixed_decoder(graph_bytes, count)
    got, expected = fixed.run(feeds), general[DECODER].run(feeds)
    for name in ("low_res_logits", "scores"):
        assert relative_error(fixed.to_host(got[name]), general[DECODER].to_host(expected[name])) < 1e-6, name


def test_runs_go_to_the_session_of_their_size_and_others_to_the_general_one(
    graph_bytes: dict[str, bytes], general: dict[str, OnnxRuntimeGraph], image_side: dict[str, np.ndarray]
) -> None:
    one = fixed_decoder(graph_bytes, 1)
    shaped = ShapedGraph(axis_input="point_coords", fixed={1: one}, general=general[DECODER])
    assert shaped.session_for(prompts(1)) == (one, 1)
    assert shaped.session_for(prompts(7)) == (general[DECODER], 7)
    answer = shaped.run({**image_side, **prompts(7)}, fetch=("scores",))
    assert shaped.to_host(answer["scores"]).shape == (7,)
    without_general = ShapedGraph(axis_input="point_coords", fixed={1: one})
    with pytest.raises(ValueError, match="no session for 7 along 'point_coords'"):
        without_general.run({**image_side, **prompts(7)})
    # Padding is for `Rows` of a value with room only, and only when asked for.
    assert without_general.session_for({"point_coords": Rows(np.zeros((4, 1, 2), np.float32), 0, 1)}) == (one, 1)


def test_the_sessions_of_a_shaped_graph_are_one_graph(
    graph_bytes: dict[str, bytes], general: dict[str, OnnxRuntimeGraph]
) -> None:
    with pytest.raises(ValueError, match="one graph on one engine"):
        ShapedGraph(axis_input="point_coords", fixed={1: fixed_decoder(graph_bytes, 1)}, general=general[ENCODER])
    with pytest.raises(ValueError, match="at least one session"):
        ShapedGraph(axis_input="point_coords", fixed={})


def test_leading_size_reads_every_kind_of_value() -> None:
    array = np.zeros((5, 2), np.float32)
    assert leading_size(array) == 5
    assert leading_size(Rows(array, 1, 3)) == 3
    assert leading_size(ort.OrtValue.ortvalue_from_numpy(array)) == 5


def test_the_served_pipeline_equals_the_general_sessions(
    segmenter: Segmenter, general: dict[str, OnnxRuntimeGraph]
) -> None:
    """The loaded model (encoder fixed to one image, decoder to one prompt per call) against the same
    pipeline on general sessions: equal masks, logits within float32 rounding."""
    assert segmenter.encoder.fixed_sizes == (1,) and segmenter.decoder.fixed_sizes == (1,)
    reference = rebuilt(segmenter, encoder=general[ENCODER], decoder=general[DECODER])
    _, eye, _ = generate(seed=9, n=1, width=400, height=300)[0]
    options = PredictOptions(points=6)
    got, expected = segmenter.predict(eye, options), reference.predict(eye, options)
    assert got.low_res_logits is not None and expected.low_res_logits is not None
    assert relative_error(got.low_res_logits, expected.low_res_logits) < 1e-6
    assert np.array_equal(got.binary, expected.binary)
