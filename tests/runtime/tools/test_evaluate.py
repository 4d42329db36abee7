"""Pixel metrics against hand counts, their 0/0 conventions, and the `vreyesam evaluate` command."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from vreyesam.cli import main
from vreyesam.runtime.tools.evaluate import Metrics, evaluate_dirs, pixel_metrics
from vreyesam.runtime.tools.synth import write_dataset

# 4x4 masks with hand counts: pred covers columns 0-1, gt columns 1-2, both in rows 0-1.
PRED = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
GT = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
EMPTY = np.zeros((4, 4), dtype=bool)

SUMMARY_AB = [  # a.png scores 0.5 / 0.5 / 0.5 / 1/3, b is perfect
    "mean precision 0.7500 over 2 images",
    "mean recall 0.7500 over 2 images",
    "mean F1 0.7500 over 2 images",
    "mean IoU 0.6667 over 2 images",
]


def _write(folder: Path, name: str, mask: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert cv2.imwrite(str(path), mask.astype(np.uint8) * 255)
    return path


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """pred/ and gt/ with a pair `a` (the hand-counted masks) and a perfect pair `b` (.bmp vs .png)."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    _write(pred, "a.png", PRED)
    _write(gt, "a.png", GT)
    _write(pred, "b.bmp", GT)
    _write(gt, "b.png", GT)
    return pred, gt


def test_counts_and_scores_by_hand() -> None:
    assert pixel_metrics(PRED, GT) == Metrics(
        tp=2, fp=2, fn=2, tn=10, precision=0.5, recall=0.5, f1=0.5, iou=pytest.approx(1 / 3)
    )


def test_unequal_errors_by_hand() -> None:
    pred = np.zeros((4, 4), dtype=bool)
    pred[0, :3] = True  # 3 pixels, 2 of them iris
    gt = np.zeros((4, 4), dtype=bool)
    gt[0, 1:] = True
    gt[1, :3] = True  # 6 pixels
    metrics = pixel_metrics(pred, gt)
    assert (metrics.tp, metrics.fp, metrics.fn, metrics.tn) == (2, 1, 4, 9)
    assert metrics.precision == pytest.approx(2 / 3)
    assert metrics.recall == pytest.approx(1 / 3)
    assert metrics.f1 == pytest.approx(4 / 9)  # 2PR / (P + R)
    assert metrics.iou == pytest.approx(2 / 7)


def test_both_empty_is_perfect() -> None:
    assert pixel_metrics(EMPTY, EMPTY) == Metrics(0, 0, 0, 16, 1.0, 1.0, 1.0, 1.0)


def test_empty_prediction_of_a_visible_iris_scores_zero() -> None:
    assert pixel_metrics(EMPTY, GT) == Metrics(0, 0, 4, 12, 0.0, 0.0, 0.0, 0.0)


def test_prediction_without_iris_scores_zero() -> None:
    assert pixel_metrics(PRED, EMPTY) == Metrics(0, 4, 0, 12, 0.0, 0.0, 0.0, 0.0)


def test_nonzero_is_foreground_and_shapes_must_match() -> None:
    assert pixel_metrics(PRED.astype(np.uint8) * 255, GT) == pixel_metrics(PRED, GT)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(3, 4\)"):
        pixel_metrics(PRED, GT[:3])


def test_cli_prints_means_and_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt = _folders(tmp_path)
    out = tmp_path / "metrics.csv"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [*SUMMARY_AB, f"wrote per-image metrics to {out}"]
    assert captured.err == ""
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [row["name"] for row in rows] == ["a", "b"]
    assert (rows[0]["tp"], rows[0]["fp"], rows[0]["fn"], rows[0]["tn"]) == ("2", "2", "2", "10")
    assert float(rows[0]["iou"]) == pytest.approx(1 / 3)
    assert rows[1]["pred"].endswith("b.bmp")


def test_cli_without_out_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt = _folders(tmp_path)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 0
    assert capsys.readouterr().out.splitlines() == SUMMARY_AB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt", "pred"]


def test_missing_pairs_are_named_and_the_rest_scored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt = _folders(tmp_path)
    _write(pred, "c.png", PRED)
    _write(gt, "d.jpg", GT)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == SUMMARY_AB
    assert f"error: c: no ground truth for prediction {pred / 'c.png'}" in captured.err
    assert f"error: d: no prediction for ground truth {gt / 'd.jpg'}" in captured.err


def test_size_mismatch_names_both_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt = _folders(tmp_path)
    _write(pred, "e.png", np.zeros((4, 4), dtype=bool))
    _write(gt, "e.png", np.zeros((3, 5), dtype=bool))
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 1
    captured = capsys.readouterr()
    assert "error: e: size mismatch: prediction is 4x4, ground truth is 5x3" in captured.err
    assert captured.out.splitlines() == SUMMARY_AB


def test_nothing_scored_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    _write(pred, "e.png", np.zeros((4, 4), dtype=bool))
    _write(gt, "e.png", np.zeros((3, 5), dtype=bool))
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: no image could be scored" in captured.err


@pytest.mark.parametrize("which", ["pred", "gt"])
def test_empty_or_missing_folder_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str) -> None:
    pred, gt = _folders(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a mask")
    for folder, message in ((empty, "holds no masks"), (tmp_path / "absent", "does not exist")):
        args = {"pred": str(pred), "gt": str(gt), which: str(folder)}
        assert main(["evaluate", "--pred", args["pred"], "--gt", args["gt"]]) == 2
        assert message in capsys.readouterr().err


def test_unreadable_and_ambiguous_files_are_problems(tmp_path: Path) -> None:
    pred, gt = _folders(tmp_path)
    (pred / "f.png").write_bytes(b"not a png")
    _write(gt, "f.png", GT)
    _write(pred, "a.tif", PRED)  # a.png is there too
    report = evaluate_dirs(pred, gt)
    assert [result.name for result in report.results] == ["b"]
    assert any(p.startswith("f: cannot read") and p.endswith("f.png as an image") for p in report.problems)
    assert "a: several prediction files (a.png, a.tif); skipped" in report.problems


def test_threshold_binarises_gray_masks(tmp_path: Path) -> None:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    assert cv2.imwrite(str(pred / "g.png"), np.full((4, 4), 100, np.uint8))
    _write(gt, "g.png", np.ones((4, 4), dtype=bool))
    assert evaluate_dirs(pred, gt).results[0].metrics.tp == 0
    assert evaluate_dirs(pred, gt, threshold=99).results[0].metrics.tp == 16


def test_threshold_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--pred", str(tmp_path), "--gt", str(tmp_path), "--threshold", "255"])
    assert exit_info.value.code == 2


def test_synthetic_masks_score_perfectly_against_themselves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_dataset(tmp_path, 2, seed=1, width=120, height=90)
    masks = str(tmp_path / "masks")
    assert main(["evaluate", "--pred", masks, "--gt", masks]) == 0
    assert "mean IoU 1.0000 over 2 images" in capsys.readouterr().out.splitlines()


def test_images_segmented_on_the_spot_score_as_the_masks_predict_writes(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--images --model scores each image's mask from the one per-image path: the same figures as scoring
    the binary/ folder `vreyesam predict` wrote for the same images."""
    write_dataset(tmp_path, 2, seed=4, width=160, height=120)
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    model = ["--model", str(model_dir), "--allow-random-weights"]
    assert main(["predict", str(images), "--out", str(out), *model]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(out / "binary"), "--gt", str(masks), "--out", str(tmp_path / "a.csv")]) == 0
    from_files = capsys.readouterr().out.splitlines()
    assert (
        main(["evaluate", "--images", str(images), "--gt", str(masks), "--out", str(tmp_path / "b.csv"), *model]) == 0
    )
    on_the_spot = capsys.readouterr().out.splitlines()
    assert on_the_spot[:4] == from_files[:4] and on_the_spot[0].startswith("mean precision")
    rows_a = [row[3:] for row in csv.reader((tmp_path / "a.csv").read_text().splitlines())]
    rows_b = [row[3:] for row in csv.reader((tmp_path / "b.csv").read_text().splitlines())]
    assert rows_a == rows_b and len(rows_a) == 3


def test_images_without_a_model_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_dataset(tmp_path, 1, seed=4, width=64, height=48)
    assert main(["evaluate", "--images", str(tmp_path / "images"), "--gt", str(tmp_path / "masks")]) == 2
    assert "no model directory" in capsys.readouterr().err
