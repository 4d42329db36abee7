"""The exported preprocessing and procedure graphs against the host code they replaced.

Run on onnxruntime's CPU provider from the test model directory. The procedure graph must agree with the
numpy procedure (tests/numpy_procedure.py): binary masks IoU >= 0.999, probability within one prompt's
weight on >= 99.9% of pixels (a logit within rounding of 0 may flip one prompt's mask), and its binary
resize is cv2.INTER_NEAREST exactly. The preprocessing graph must agree with Pillow's float bilinear resize
(torchvision's filter; the parity tests hold the whole pipeline to torch).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests import numpy_procedure
from tests.model_files import open_model_files
from vreyesam.runtime.engines.onnxruntime_graph import OnnxRuntimeGraph, SessionConfig
from vreyesam.runtime.manifest import PREPROCESS, PROCEDURE, PROCEDURE_PARALLEL, Preprocessing, read_manifest
from vreyesam.runtime.tools import synth

# (fitted h, w) -> (input h, w): the usual 4:3 down and up, portrait, a wide image, an image at the fitted
# size, the size pair where Resize nearest (float32 source index) and cv2 disagree, a thin strip.
SIZES = [
    ((768, 1024), (300, 400)),
    ((1024, 768), (400, 300)),
    ((576, 1024), (1080, 1920)),
    ((768, 1024), (768, 1024)),
    ((682, 1024), (1000, 1500)),
    ((91, 1024), (90, 1013)),
    ((1024, 1), (20000, 1)),
]


@pytest.fixture(scope="module")
def graphs(model_dir: Path) -> dict[str, OnnxRuntimeGraph]:
    files = open_model_files(model_dir)
    config = SessionConfig(intra_op_threads=2)
    return {
        role: OnnxRuntimeGraph(files.take_graph(role), ["CPUExecutionProvider"], config)
        for role in (PREPROCESS, PROCEDURE, PROCEDURE_PARALLEL)
    }


def _decoder_like(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the scale random weights give (|l| ~ 0.1, many near 0: the hardest case) and scores."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-0.1, 0.1, 256, dtype=np.float32)
    logits = (rng.normal(0, 0.1, (count, 256, 256)) + ramp[None, None, :]).astype(np.float32)
    return logits, rng.uniform(0.4, 0.6, count).astype(np.float32)


def _procedure(graph: OnnxRuntimeGraph, logits: np.ndarray, scores: np.ndarray, fitted, size, threshold=0.2):
    feeds = {
        "low_res_logits": logits,
        "scores": scores,
        "threshold": np.asarray(threshold, np.float32),
        "fitted_hw": np.asarray(fitted, np.int64),
        "input_hw": np.asarray(size, np.int64),
    }
    return {name: graph.to_host(value) for name, value in graph.run(feeds).items()}


@pytest.mark.parametrize(("fitted", "size"), SIZES)
def test_procedure_graph_agrees_with_the_numpy_procedure(graphs, fitted, size) -> None:
    logits, scores = _decoder_like(30, seed=sum(size))
    ours = _procedure(graphs[PROCEDURE], logits, scores, fitted, size)
    reference = numpy_procedure.maps(logits, scores, fitted, size, 0.2)
    assert ours["binary"].shape == ours["probability"].shape == ours["uncertainty"].shape == size
    assert ours["binary"].dtype == bool
    union = np.logical_or(ours["binary"], reference["binary"]).sum()
    assert np.logical_and(ours["binary"], reference["binary"]).sum() / max(union, 1) >= 0.999
    one_prompt = 1.0 / len(scores)
    assert (np.abs(ours["probability"] - reference["probability"]) <= one_prompt).mean() >= 0.999
    np.testing.assert_allclose(ours["uncertainty"], reference["uncertainty"], atol=1e-4)
    assert int(ours["area_px"]) == int(ours["binary"].sum())


@pytest.mark.parametrize(("fitted", "size"), SIZES[:5])
@pytest.mark.parametrize("count", [30, 1])
def test_both_forms_of_the_procedure_give_the_same_bits(graphs, fitted, size, count: int) -> None:
    """All prompts at once (a GPU's form) and one at a time (the CPU's) sum the same votes in the same order."""
    logits, scores = _decoder_like(count, seed=sum(size) + count)
    sequential = _procedure(graphs[PROCEDURE], logits, scores, fitted, size)
    parallel = _procedure(graphs[PROCEDURE_PARALLEL], logits, scores, fitted, size)
    for name, value in sequential.items():
        assert np.array_equal(parallel[name], value), name


@pytest.mark.parametrize(("fitted", "size"), SIZES)
def test_the_binary_resize_is_cv2_nearest_exactly(graphs, fitted, size) -> None:
    """The graph's binary at the input size is cv2's nearest resize of its binary at the fitted size."""
    rng = np.random.default_rng(1)
    logits = np.where(rng.random((1, 256, 256)) > 0.5, 1.0, -1.0).astype(np.float32)  # a fine random pattern
    scores = np.ones(1, np.float32)
    at_fitted = _procedure(graphs[PROCEDURE], logits, scores, fitted, fitted)["binary"]
    resized = _procedure(graphs[PROCEDURE], logits, scores, fitted, size)["binary"]
    expected = cv2.resize(at_fitted.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    assert 0.1 < at_fitted.mean() < 0.9
    assert np.array_equal(resized, expected.astype(bool))


def test_uniform_weights_when_the_scores_do_not_sum_above_zero(graphs) -> None:
    logits = np.stack([np.full((256, 256), 1.0), np.full((256, 256), -1.0)]).astype(np.float32)
    scores = np.array([0.0, 0.0], np.float32)
    ours = _procedure(graphs[PROCEDURE], logits, scores, (96, 128), (96, 128), threshold=0.4)
    np.testing.assert_allclose(ours["probability"], 0.5)  # each mask weighs 1/2
    assert ours["binary"].all()


def test_only_the_fetched_outputs_come_back(graphs) -> None:
    logits, scores = _decoder_like(3, seed=0)
    feeds = {
        "low_res_logits": logits,
        "scores": scores,
        "threshold": np.asarray(0.2, np.float32),
        "fitted_hw": np.asarray((768, 1024), np.int64),
        "input_hw": np.asarray((300, 400), np.int64),
    }
    assert set(graphs[PROCEDURE].run(feeds, ("binary", "area_px"))) == {"binary", "area_px"}


@pytest.mark.parametrize("size", [(300, 400), (480, 640), (400, 300), (1080, 1920), (90, 120)])
def test_preprocessing_graph_agrees_with_pillows_filter(graphs, model_dir: Path, size) -> None:
    prep: Preprocessing = read_manifest(model_dir).preprocessing
    _, image, _ = synth.generate(seed=size[0], n=1, width=size[1], height=size[0], mode="rgb")[0]
    ratio = min(prep.fit_size / size[1], prep.fit_size / size[0])
    fitted = cv2.resize(image, (int(size[1] * ratio), int(size[0] * ratio)), interpolation=cv2.INTER_LINEAR)
    ours = graphs[PREPROCESS].to_host(graphs[PREPROCESS].run({"fitted": fitted})["image"])[0]
    planes = [
        np.asarray(
            Image.fromarray(fitted[:, :, c].astype(np.float32) / np.float32(255)).resize(
                (prep.image_size, prep.image_size), Image.Resampling.BILINEAR
            )
        )
        for c in range(3)
    ]
    mean, std = (np.asarray(v, np.float32)[:, None, None] for v in (prep.mean, prep.std))
    expected = (np.stack(planes) - mean) / std
    assert ours.shape == expected.shape == (3, prep.image_size, prep.image_size)
    assert np.abs(ours - expected).max() <= 5e-4
