"""Shared fixtures: one exported model directory and one server per test session, an isolated environment.

The model directory is exported once with random weights (seed 0) by the real exporter, or taken from
VREYESAM_TEST_MODEL_DIR — how CI hands the builder stage's export to the torch-free serving stage. The
server (`served`) is a real `vreyesam serve` process over it, for every test that only sends requests.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# OpenCV through the runtime's door, before any test module imports cv2: in-process entry points then find
# it loaded with the default limits, as they require (see runtime/media/opencv.py). The manifests' stage has
# no runtime installed.
if importlib.util.find_spec("vreyesam.runtime") is not None:
    from vreyesam.runtime.media import opencv

    opencv.load()

from tests.server_harness import SHARED_SERVER_LIMITS, ServerProcess, ready_server

MODEL_DIR_ENV = "VREYESAM_TEST_MODEL_DIR"
# The public key the test model was signed with at export (make test signs it), when it was.
MODEL_PUBLIC_KEY_ENV = "VREYESAM_TEST_MODEL_PUBLIC_KEY"
RANDOM_SEED = 0
HAS_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("sam2") is not None


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings come from the environment: no test sees another's or the developer's variables."""
    for name in list(os.environ):
        if (name.startswith("VREYESAM_") and name not in {MODEL_DIR_ENV, MODEL_PUBLIC_KEY_ENV}) or name in {
            "HF_TOKEN",
            "PORT",
        }:
            monkeypatch.delenv(name)
    yield


def _export_model(out_dir: Path) -> None:
    from vreyesam.export.builder import ExportRequest, export_model

    export_model(ExportRequest(out_dir=out_dir, random_weights=True, seed=RANDOM_SEED))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights (seed 0) model directory made by `vreyesam export`."""
    given = os.environ.get(MODEL_DIR_ENV)
    if given:
        path = Path(given)
        assert (path / "manifest.json").is_file(), f"{MODEL_DIR_ENV} does not hold a model directory"
        return path
    if not HAS_TORCH:
        pytest.fail(f"no model directory: set {MODEL_DIR_ENV} or run in the builder environment (torch, sam2)")
    out_dir = tmp_path_factory.mktemp("export") / "model"
    _export_model(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def segmenter(model_dir: Path):
    """The fp32 model on onnxruntime's CPU provider (what the parity tests hold to Meta's predictor)."""
    from vreyesam.runtime.model.loader import LoadOptions, load_segmenter

    return load_segmenter(model_dir, LoadOptions(device="cpu", precision="fp32", allow_random_weights=True))


@pytest.fixture(scope="session")
def served(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real `vreyesam serve` on the test model, shared by the tests that only send it requests."""
    log_path = tmp_path_factory.mktemp("served") / "server.log"
    with ready_server(model_dir, log_path, "--allow-random-weights", env=SHARED_SERVER_LIMITS) as proc:
        yield proc


# Fixtures that need an exported model (and so torch once, to export it) or a real server process: a test
# that uses none of them is a unit test (`make unit`: in process, in the light serving environment).
NEEDS_A_MODEL = frozenset({"model_dir", "segmenter", "served"})
HEAVY_MARKERS = frozenset({"browser", "ray", "torch"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if not uses & NEEDS_A_MODEL and not {mark.name for mark in item.iter_markers()} & HEAVY_MARKERS:
            item.add_marker(pytest.mark.unit)
