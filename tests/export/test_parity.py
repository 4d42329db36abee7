"""The exported model on onnxruntime against Meta's SAM2ImagePredictor running the VREyeSAM procedure.

Both sides use the same random weights (seed 0) and the same seeded prompts. Random weights give logits
near zero, so the binary masks are near-threshold noise: agreement here is a strict test.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor

from tests import numpy_procedure
from tests.conftest import RANDOM_SEED
from vreyesam.export.fidelity import iou
from vreyesam.export.meta_reference import ReferenceResult, run_reference
from vreyesam.export.model import build_random
from vreyesam.export.reference import TorchReference
from vreyesam.runtime.media.decode import decode_image
from vreyesam.runtime.model import preprocess, procedure
from vreyesam.runtime.model.segmenter import Prediction
from vreyesam.runtime.tools import synth

# name -> (width, height, channels written to the PNG file)
CASES = {
    "vrbiom_400x300": (400, 300, 3),
    "vga_640x480": (640, 480, 3),
    "portrait_300x400": (300, 400, 3),
    "large_1920x1080": (1920, 1080, 3),
    "small_120x90": (120, 90, 3),
    "grayscale_400x300": (400, 300, 1),
    "rgba_400x300": (400, 300, 4),
}


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> SAM2ImagePredictor:
    from vreyesam.runtime.manifest import read_manifest

    manifest = read_manifest(model_dir)
    # The reference must hold the very weights that were exported.
    assert manifest.source.random_weights and manifest.source.seed == RANDOM_SEED
    assert manifest.tools["torch"] == torch.__version__.split("+")[0] or manifest.tools["torch"] == torch.__version__
    return SAM2ImagePredictor(build_random(RANDOM_SEED))


def _write_case(directory: Path, name: str, width: int, height: int, channels: int) -> Path:
    _, rgb, _ = synth.generate(seed=len(name), n=1, width=width, height=height, mode="rgb")[0]
    bgr = rgb[..., ::-1]
    if channels == 1:
        pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    elif channels == 4:
        alpha = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, axis=0)
        pixels = np.dstack([bgr, alpha])
    else:
        pixels = bgr
    path = directory / f"{name}.png"
    assert cv2.imwrite(str(path), pixels)
    return path


@pytest.fixture(scope="module")
def parity_results(
    tmp_path_factory: pytest.TempPathFactory, predictor: SAM2ImagePredictor, segmenter
) -> dict[str, tuple[ReferenceResult, Prediction]]:
    directory = tmp_path_factory.mktemp("parity")
    results = {}
    for name, (width, height, channels) in CASES.items():
        path = _write_case(directory, name, width, height, channels)
        reference = run_reference(predictor, path, points=30, seed=0, threshold=0.2)
        ours = segmenter.predict(decode_image(path.read_bytes()))
        results[name] = (reference, ours)
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_final_binary_mask_matches_reference(parity_results, case: str) -> None:
    reference, ours = parity_results[case]
    assert ours.binary.shape == reference.binary.shape
    assert iou(ours.binary, reference.binary) >= 0.999


@pytest.mark.parametrize("case", list(CASES))
def test_probability_map_matches_reference(parity_results, case: str) -> None:
    reference, ours = parity_results[case]
    off = np.abs(ours.probability - reference.probability) > 1.0 / 255.0
    # A logit within rounding of zero can flip one prompt's mask: at most 0.1% of pixels.
    assert off.mean() <= 0.001


@pytest.mark.parametrize("case", list(CASES))
def test_scores_logits_and_uncertainty_match_reference(parity_results, case: str) -> None:
    reference, ours = parity_results[case]
    np.testing.assert_allclose(ours.scores, reference.scores, atol=1e-5)
    scale = np.abs(reference.low_res_logits).max()
    assert np.abs(ours.low_res_logits - reference.low_res_logits).max() / scale <= 1e-4
    assert np.abs(ours.uncertainty - reference.uncertainty).max() <= 1e-3


@pytest.mark.parametrize("case", list(CASES))
def test_procedure_graph_agrees_with_the_numpy_procedure_it_replaced(parity_results, case: str) -> None:
    """On the parity set, from our own decoder outputs: the graph's maps against the numpy procedure's."""
    _, ours = parity_results[case]
    height, width = ours.binary.shape
    ratio = min(1024 / width, 1024 / height)
    fitted_hw = (int(height * ratio), int(width * ratio))
    replaced = numpy_procedure.maps(ours.low_res_logits, ours.scores, fitted_hw, (height, width), 0.2)
    assert iou(ours.binary, replaced["binary"]) >= 0.999
    one_prompt = 1.0 / len(ours.scores)
    assert (np.abs(ours.probability - replaced["probability"]) <= one_prompt).mean() >= 0.999


def test_gate_reference_equals_meta_predictor(model_dir: Path, predictor: SAM2ImagePredictor) -> None:
    """The torchvision-free torch path the export gate uses is Meta's predictor, number for number."""
    _, rgb, _ = synth.generate(seed=7, n=1, width=400, height=300, mode="nir")[0]
    fitted = preprocess.fit_image(rgb, 1024)
    fitted_hw = fitted.shape[:2]
    points = procedure.sample_points(fitted_hw, 5, seed=3)
    with torch.no_grad():
        predictor.set_image(fitted)
        _, scores, logits = predictor.predict(point_coords=points, point_labels=np.ones((5, 1)))
    gate = TorchReference(predictor.model, __import__("vreyesam.runtime.manifest", fromlist=["x"]).Preprocessing())
    gate_logits, gate_scores = gate.decode(gate.features(fitted), procedure.to_model_frame(points, fitted_hw, 1024))
    np.testing.assert_allclose(gate_scores.numpy(), scores[:, 0], atol=1e-6)
    np.testing.assert_allclose(np.clip(gate_logits.numpy(), -32, 32), logits[:, 0], atol=1e-5)
