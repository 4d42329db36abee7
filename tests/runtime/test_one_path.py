"""One image, one path: every caller of `model.segment` answers alike, from the model's own defaults, and no
entry point starts with OpenCV's image limits out of effect."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import httpx
import pytest

from tests.model_variants import with_procedure_defaults
from tests.server_harness import ServerProcess, ready_server, vreyesam_env
from vreyesam.cli import main
from vreyesam.runtime.media import render
from vreyesam.runtime.model.loader import LoadOptions, load_segmenter
from vreyesam.runtime.model.segment import SegmentRequest, segment
from vreyesam.runtime.tools.synth import generate

OTHER_DEFAULTS = {"points": 7, "threshold": 0.35, "seed": 11}


@pytest.fixture(scope="module")
def other_model(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test model as an export with the procedure defaults 7 points, threshold 0.35, seed 11 writes it."""
    return with_procedure_defaults(model_dir, tmp_path_factory.mktemp("defaults") / "model", **OTHER_DEFAULTS)


@pytest.fixture(scope="module")
def eye_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, image, _ = generate(seed=21, n=1, width=200, height=150)[0]
    path = tmp_path_factory.mktemp("eye") / "eye.png"
    path.write_bytes(render.encode_png(image))
    return path


@pytest.fixture(scope="module")
def server(other_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("one-path") / "server.log"
    with ready_server(other_model, log, "--allow-random-weights") as proc:
        yield proc


def test_the_command_line_and_http_use_the_models_defaults_and_agree(
    other_model: Path, eye_png: Path, server: ServerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with redirect_stdout(StringIO()), redirect_stderr(StringIO()):
        code = main(["predict", str(eye_png), "--out", str(out), "--model", str(other_model), "--allow-random-weights"])
    assert code == 0
    cli_mask = (out / "binary" / "eye.png").read_bytes()

    ready = httpx.get(f"{server.base_url}/readyz", timeout=10).json()
    assert ready["defaults"] == OTHER_DEFAULTS
    answer = httpx.post(
        f"{server.base_url}/predict",
        params={"outputs": "mask"},
        content=eye_png.read_bytes(),
        headers={"content-type": "image/png"},
        timeout=120,
    ).json()
    assert answer["parameters"] == {**OTHER_DEFAULTS, "prompts": "sampled"}
    assert base64.b64decode(answer["outputs"]["mask"]["png_base64"]) == cli_mask

    # The defaults decided the answer: the same image with the reference's (30 prompts, 0.2, seed 0) differs.
    segmenter = load_segmenter(other_model, LoadOptions(allow_random_weights=True))
    reference = segment(segmenter, eye_png.read_bytes(), SegmentRequest(points=30, threshold=0.2, seed=0))
    assert reference.parameters.points == 30
    assert reference.pngs["mask"] != cli_mask


CV2_FIRST = "import cv2, sys; from vreyesam.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize(
    ("command", "code"),
    [(["serve", "--port", "1"], 1), (["predict", "IMAGE", "--out", "OUT"], 2)],
    ids=["serve", "predict"],
)
def test_no_entry_point_starts_after_opencv_was_loaded_without_its_limits(
    command: list[str], code: int, model_dir: Path, eye_png: Path, tmp_path: Path
) -> None:
    """serve (also the images' and the Space's command; exit 1, as any failed start) and predict (exit 2, as
    its other refusals before any image) refuse at once, in one line; predict --ray and the Ray replica are
    checked in tests/runtime/cluster/test_opencv_entry.py (the Ray stage)."""
    args = [str(eye_png) if a == "IMAGE" else str(tmp_path / "out") if a == "OUT" else a for a in command]
    done = subprocess.run(
        [sys.executable, "-c", CV2_FIRST, *args, "--model", str(model_dir), "--allow-random-weights"],
        env=vreyesam_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "OpenCV was loaded before its image limits were set" in lines[0], done.stderr
    assert not (tmp_path / "out" / "binary").exists()
