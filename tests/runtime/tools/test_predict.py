"""`vreyesam predict`: output files, summary.csv, failures, --recursive, --resume, determinism, model errors.

A prediction takes seconds on a CPU, so the model runs in two commands only: `first_run` (shared by most
tests) and the --resume run, which re-segments one image and so also checks that the same seed gives the
same files. Discovery and the error paths run without loading the model.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vreyesam.cli import main
from vreyesam.runtime.media.iris import iris_geometry
from vreyesam.runtime.tools.inputs import find_inputs
from vreyesam.runtime.tools.summary import COLUMNS, IRIS_COLUMNS, flat_row
from vreyesam.runtime.tools.synth import generate

WIDTH, HEIGHT = 160, 120
SEED = 7
# Few prompt points keep the decoder cheap; the encoder runs once per image whatever the count.
FAST = ["--points", "3", "--seed", str(SEED), "--device", "cpu", "--allow-random-weights"]
KINDS = ("binary", "probability", "uncertainty", "overlay")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def predict(*args: str | Path) -> Result:
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(["predict", *map(str, args)])
    return Result(code, stdout.getvalue(), stderr.getvalue())


def read_rows(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def by_input(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["input"]: row for row in rows}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """in/a.png, in/sub/b.PNG (nested, upper-case suffix), in/bad.png (text), in/sub/a.bmp (same stem as
    a.png), in/notes.txt (not an image suffix) and a hidden in/.c.png."""
    root = tmp_path_factory.mktemp("inputs") / "in"
    (root / "sub").mkdir(parents=True)
    (_, first, _), (_, second, _) = generate(seed=3, n=2, width=WIDTH, height=HEIGHT)
    for path, image in [(root / "a.png", first), (root / "sub" / "b.PNG", second), (root / "sub" / "a.bmp", first)]:
        ok, data = cv2.imencode(path.suffix.lower(), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        assert ok
        path.write_bytes(data.tobytes())
    (root / "bad.png").write_text("not an image\n")
    (root / "notes.txt").write_text("notes\n")
    shutil.copy(root / "a.png", root / ".c.png")
    return root


@pytest.fixture(scope="module")
def first_run(inputs: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    out = tmp_path_factory.mktemp("first") / "out"
    return predict("--model", model_dir, inputs, "--recursive", "--overlay", "--out", out, *FAST), out


def test_discovery_by_suffix_without_and_with_recursion(inputs: Path) -> None:
    flat = [item.relative.as_posix() for item in find_inputs([inputs])]
    assert flat == ["a.png", "bad.png"]
    nested = [item.relative.as_posix() for item in find_inputs([inputs], recursive=True)]
    assert nested == ["a.png", "bad.png", "sub/a.bmp", "sub/b.PNG"]
    # a file named explicitly is relative to itself; the output folder is never read back
    assert [item.relative for item in find_inputs([inputs / "sub" / "b.PNG"])] == [Path("b.PNG")]
    assert find_inputs([inputs], recursive=True, exclude=inputs / "sub") == find_inputs([inputs])


def test_exit_code_and_messages(first_run: tuple[Result, Path]) -> None:
    result, _ = first_run
    assert result.code == 1
    assert "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert "bad.png: unsupported image format" in errors[0]
    assert "a.bmp: duplicate output name" in errors[1]
    assert result.stdout.startswith("4 images: 2 ok, 0 skipped, 2 failed; mean ")
    assert result.stdout.rstrip().endswith(" s per image")


def test_outputs_have_the_input_size_and_the_right_values(first_run: tuple[Result, Path]) -> None:
    _, out = first_run
    for stem in ("a", "b"):
        modes = {}
        for kind in KINDS:
            with Image.open(out / kind / f"{stem}.png") as image:
                assert image.size == (WIDTH, HEIGHT)
                modes[kind] = image.mode
        assert modes == {"binary": "L", "probability": "L", "uncertainty": "RGB", "overlay": "RGB"}
        binary = pixels(out / "binary" / f"{stem}.png")
        assert set(np.unique(binary)) <= {0, 255}
    assert sorted(p.name for p in (out / "binary").iterdir()) == ["a.png", "b.png"]  # no temp files left


def test_summary_rows(first_run: tuple[Result, Path]) -> None:
    _, out = first_run
    rows = read_rows(out)
    assert tuple(rows[0]) == COLUMNS
    assert [(r["input"], r["stem"], r["status"]) for r in rows] == [
        ("a.png", "a", "ok"),
        ("bad.png", "bad", "failed"),
        ("sub/a.bmp", "a", "failed"),
        ("sub/b.PNG", "b", "ok"),
    ]
    rows_by_input = by_input(rows)
    bad, good = rows_by_input["bad.png"], rows_by_input["sub/b.PNG"]
    assert bad["error"].startswith("unsupported image format") and bad["area_px"] == ""
    assert (good["width"], good["height"], good["error"]) == (str(WIDTH), str(HEIGHT), "")
    area = int(np.count_nonzero(pixels(out / "binary" / "b.png")))
    assert int(good["area_px"]) == area
    assert float(good["coverage_percent"]) == pytest.approx(100 * area / (WIDTH * HEIGHT), abs=1e-4)
    assert float(good["total_ms"]) > 0 and 0 <= float(good["score_mean"]) <= float(good["score_max"])
    iris = iris_geometry(pixels(out / "binary" / "b.png") > 0)  # measured on the mask the row is about
    assert good["iris_components"] == str(iris.components)
    assert good["iris_ellipse_x"] == ("" if iris.ellipse is None else str(iris.ellipse.x))
    assert good["iris_occlusion90"] == ("" if iris.occlusion90 is None else str(iris.occlusion90))


def test_vreyesam_geometry_measures_the_written_mask_as_its_summary_row(
    first_run: tuple[Result, Path], inputs: Path
) -> None:
    """Masks made elsewhere get the same measures: here, the mask this command wrote, with its input."""
    _, out = first_run
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        assert main(["geometry", str(out / "binary" / "a.png"), "--images", str(inputs)]) == 0
    (record,) = [json.loads(line) for line in stdout.getvalue().splitlines()]
    (row,) = [row for row in read_rows(out) if row["input"] == "a.png"]
    flat = flat_row(record["iris"], "iris_")  # the column names summary.csv gives the block
    assert {column: flat.get(column, "") for column in IRIS_COLUMNS} == {column: row[column] for column in IRIS_COLUMNS}
    assert (str(record["quality"]["accepted"]).lower(), ";".join(record["quality"]["reasons"])) == (
        row["quality_accepted"],
        row["quality_reasons"],
    )


def test_resume_skips_finished_images_and_reproduces_the_others(
    first_run: tuple[Result, Path], inputs: Path, model_dir: Path, tmp_path: Path
) -> None:
    _, first_out = first_run
    out = tmp_path / "out"
    shutil.copytree(first_out, out)
    (out / "uncertainty" / "b.png").unlink()  # b is unfinished: it is segmented again
    result = predict(
        "--model", model_dir, inputs / "a.png", inputs / "sub" / "b.PNG", "--resume", "--overlay", "--out", out, *FAST
    )
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout.startswith("2 images: 1 ok, 1 skipped, 0 failed; mean ")
    # same image, same seed: the very same files
    for kind in KINDS:
        assert (out / kind / "b.png").read_bytes() == (first_out / kind / "b.png").read_bytes()
    earlier, rows = by_input(read_rows(first_out)), by_input(read_rows(out))
    # rows of stems this run did not touch are kept; the skipped image keeps its earlier statistics
    assert list(rows) == ["bad.png", "a.png", "b.PNG"]
    assert rows["bad.png"] == earlier["bad.png"]
    assert rows["a.png"] == {**earlier["a.png"], "status": "skipped"}
    assert rows["b.PNG"]["area_px"] == earlier["sub/b.PNG"]["area_px"]


def test_no_images_found_is_a_usage_error(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = predict("--model", model_dir, tmp_path / "empty", "--out", tmp_path / "out", *FAST)
    assert result.code == 2
    assert result.stderr.startswith("vreyesam predict: error: no images found")


def test_missing_input_is_a_usage_error(model_dir: Path, tmp_path: Path) -> None:
    result = predict("--model", model_dir, tmp_path / "nope.png", "--out", tmp_path / "out", *FAST)
    assert (result.code, result.stderr) == (
        2,
        f"vreyesam predict: error: input {tmp_path / 'nope.png'} does not exist\n",
    )


def test_missing_model_dir_is_one_line_and_exit_code_2(inputs: Path, tmp_path: Path) -> None:
    result = predict("--model", tmp_path / "nope", inputs, "--out", tmp_path / "out", *FAST)
    assert result.code == 2
    assert result.stderr == f"vreyesam predict: error: model directory {tmp_path / 'nope'} does not exist\n"
    assert not (tmp_path / "out").exists()


def test_model_dir_comes_from_the_environment(inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = predict(inputs, "--out", tmp_path / "out")
    assert (result.code, result.stderr) == (
        2,
        "vreyesam predict: error: no model directory: pass --model DIR or set VREYESAM_MODEL_DIR\n",
    )
    monkeypatch.setenv("VREYESAM_MODEL_DIR", str(tmp_path / "from-env"))
    result = predict(inputs, "--out", tmp_path / "out")
    assert result.stderr == f"vreyesam predict: error: model directory {tmp_path / 'from-env'} does not exist\n"


def test_random_weights_model_is_refused_without_the_flag(inputs: Path, model_dir: Path, tmp_path: Path) -> None:
    result = predict("--model", model_dir, inputs, "--out", tmp_path / "out", "--device", "cpu")
    assert result.code == 1
    assert result.stderr.startswith("vreyesam predict: error: model was exported with random weights")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "binary").exists()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--points", "0"], "parameter 'points' must be a whole number from 1 to 64"),
        (["--points", "65"], "parameter 'points' must be a whole number from 1 to 64"),  # the API's bound too
        (["--threshold", "1.5"], "parameter 'threshold' must be a number from 0 to 1"),
        (["--threshold", "nan"], "parameter 'threshold' must be a number from 0 to 1"),
        (["--seed", "-1"], "parameter 'seed' must be a whole number from 0 to 2^63 - 1"),
    ],
)
def test_option_values_out_of_bounds_are_usage_errors_in_the_apis_words(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture, bad: list[str], message: str
) -> None:
    assert main(["predict", str(inputs), "--out", str(tmp_path / "out"), *bad]) == 2
    assert capsys.readouterr().err == f"vreyesam predict: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_option_values_of_the_wrong_type_are_argparse_errors(inputs: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(inputs), "--out", str(tmp_path), "--points", "many"])
    assert exit_info.value.code == 2
