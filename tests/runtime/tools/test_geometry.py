"""`vreyesam geometry`: masks made elsewhere get the answers' iris block and verdict.

Against the synthetic generator's own ellipses (the masks `vreyesam synth` writes); tests/runtime/tools/
test_predict.py holds it to the model's own answer (the mask `vreyesam predict` wrote, its summary row).
"""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import cv2
import numpy as np
import pytest

from vreyesam.cli import main
from vreyesam.runtime.tools.eye_geometry import sample_params, true_visible_fraction

EYES = 12


def geometry(*args: str | Path) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(["geometry", *map(str, args)])
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--out", str(root), "-n", str(EYES), "--seed", "5"]) == 0
    return root


def test_synthetic_masks_measure_as_the_generator_drew_them(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "geometry.jsonl"
    code, stdout, stderr = geometry(dataset / "masks", "--images", dataset / "images", "--json", out)
    assert (code, stdout, stderr) == (0, "", "")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [record["mask"] for record in records] == [f"eye_{index:04d}.png" for index in range(EYES)]
    for index, record in enumerate(records):
        params = sample_params(np.random.default_rng([5, index]))  # what `synth --seed 5` drew
        assert record["image"] == f"eye_{index:04d}.png"
        fit = record["iris"]["ellipse"]
        if true_visible_fraction(params) >= 0.6:
            assert math.hypot(fit["x"] - params.iris.center[0], fit["y"] - params.iris.center[1]) <= 1.1, record
            assert abs(fit["semi_major"] / max(params.iris.axes) - 1.0) <= 0.03, record
        assert record["iris"]["sharpness_score"] is not None and record["iris"]["specular_fraction"] is not None
        assert record["quality"]["accepted"] == (record["quality"]["reasons"] == [])


def test_without_images_the_image_measures_are_null(dataset: Path) -> None:
    code, stdout, _ = geometry(dataset / "masks" / "eye_0000.png")
    (record,) = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and record["image"] is None
    assert record["iris"]["sharpness_score"] is None and record["iris"]["specular_fraction"] is None
    assert record["iris"]["ellipse"] is not None


def test_a_bad_mask_is_reported_and_the_rest_measured(dataset: Path, tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "a.png").write_bytes((dataset / "masks" / "eye_0001.png").read_bytes())
    (masks / "b.png").write_text("not an image\n")
    (masks / "c.png").write_bytes((dataset / "masks" / "eye_0002.png").read_bytes())
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes((dataset / "images" / "eye_0001.png").read_bytes())
    code, stdout, stderr = geometry(masks, "--images", images)
    records = [json.loads(line) for line in stdout.splitlines()]
    assert code == 1 and [record["mask"] for record in records] == ["a.png", "b.png", "c.png"]
    assert records[0]["image"] == "a.png" and "error" not in records[0]
    assert records[1] == {"mask": "b.png", "error": "not an image"}
    assert records[2]["image"] is None and records[2]["note"] == "no image of this stem in --images"
    assert stderr == "b.png: not an image\n"


def test_an_image_of_another_size_is_an_error(dataset: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "eye_0000.png").write_bytes((dataset / "images" / "eye_0001.png").read_bytes())
    small = tmp_path / "eye_0000.png"
    mask = cv2.imread(str(dataset / "masks" / "eye_0000.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(small), cv2.resize(mask, (200, 150), interpolation=cv2.INTER_NEAREST))
    code, stdout, _ = geometry(small, "--images", images)
    (record,) = [json.loads(line) for line in stdout.splitlines()]
    assert code == 1 and record["error"] == "its image eye_0000.png is 400x300, the mask 200x150"


def test_no_masks_is_a_usage_error(tmp_path: Path) -> None:
    code, stdout, stderr = geometry(tmp_path)
    assert (code, stdout) == (2, "")
    assert stderr == "vreyesam geometry: error: no mask files found in the inputs\n"
