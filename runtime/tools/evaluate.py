"""Pixel-level precision, recall, F1 and IoU of predicted iris masks against ground truth.

These are the VREyeSAM paper's metrics: counted per image, then averaged over images (macro mean), so a
small iris weighs as much as a large one. Files pair up by stem (eye_0001.png <-> eye_0001.jpg), masks are
read as grayscale and foreground is value > threshold.

The predictions are either mask files (`--pred DIR`, e.g. what `vreyesam predict` wrote) or made on the
spot from the images themselves (`--images DIR --model MODEL`): each image through the one per-image
function (`model.segment`), its mask scored as the PNG `vreyesam predict` and the API would give.

Exit codes of `vreyesam evaluate`: 0 every file paired and scored; 1 some files could not be paired or
scored (each is named), the others are still scored; 2 nothing could be evaluated (missing or empty
folder, no pair scored) or the CSV could not be written.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path

import numpy as np

from vreyesam.runtime.media.decode import DEFAULT_LIMITS, ImageInputError
from vreyesam.runtime.media.files import write_bytes_atomic
from vreyesam.runtime.media.opencv import cv2
from vreyesam.runtime.model.agreement import iou_from_counts
from vreyesam.runtime.model.procedure import PromptOutsideImage
from vreyesam.runtime.model.segment import SegmentRequest, segment
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import DecodeLimits, SettingsError
from vreyesam.runtime.tools.inputs import UsageError
from vreyesam.runtime.tools.model_flags import add_model_flags
from vreyesam.runtime.vocabulary import IMAGE_SUFFIXES

DEFAULT_THRESHOLD = 127
SCORES = ("precision", "recall", "f1", "iou")
_LABELS = {"precision": "precision", "recall": "recall", "f1": "F1", "iou": "IoU"}


class EvaluationError(Exception):
    """Nothing can be evaluated: a folder is missing or holds no masks."""


@dataclass(frozen=True)
class Metrics:
    """Pixel counts and scores of one predicted mask against its ground truth.

    A ratio whose denominator is 0 is 1.0 when both masks are empty (they agree there is no iris) and 0.0
    otherwise: an empty prediction of a visible iris has precision 0, a prediction on an image without
    iris has recall 0; F1 and IoU are 0 in both cases.
    """

    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    iou: float


@dataclass(frozen=True)
class ImageResult:
    """One scored pair."""

    name: str
    pred: Path
    gt: Path
    metrics: Metrics


@dataclass
class EvaluationReport:
    """Per-image results and the files that could not be paired or scored (one message each)."""

    results: list[ImageResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def means(self) -> dict[str, float]:
        """Mean of each score over the scored images; empty when none was scored."""
        if not self.results:
            return {}
        return {s: float(np.mean([getattr(r.metrics, s) for r in self.results])) for s in SCORES}


def _ratio(numerator: int, denominator: int, both_empty: bool) -> float:
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return numerator / denominator


def pixel_metrics(pred: np.ndarray, gt: np.ndarray) -> Metrics:
    """Score an HxW predicted mask against an HxW ground-truth mask (bool; other dtypes: nonzero = iris)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    pred, gt = pred.astype(bool), gt.astype(bool)
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(~pred & gt))
    tn = int(pred.size - tp - fp - fn)
    empty = tp + fp + fn == 0
    return Metrics(
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        precision=_ratio(tp, tp + fp, empty),
        recall=_ratio(tp, tp + fn, empty),
        # 2tp / (2tp + fp + fn) is the harmonic mean of precision and recall, without its 0/0 cases.
        f1=_ratio(2 * tp, 2 * tp + fp + fn, empty),
        iou=iou_from_counts(tp, tp + fp + fn),
    )


def _mask_files(folder: Path, role: str) -> tuple[dict[str, Path], list[str]]:
    """Mask files of a folder by stem, and a problem for each stem that names several files."""
    if not folder.is_dir():
        raise EvaluationError(f"{role} folder {folder} does not exist or is not a folder")
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        # Dot files are editor and OS debris (e.g. macOS ._eye_0001.png), never masks.
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            by_stem.setdefault(path.stem, []).append(path)
    if not by_stem:
        raise EvaluationError(f"{role} folder {folder} holds no masks ({', '.join(sorted(IMAGE_SUFFIXES))})")
    problems = [
        f"{stem}: several {role} files ({', '.join(p.name for p in paths)}); skipped"
        for stem, paths in by_stem.items()
        if len(paths) > 1
    ]
    return {stem: paths[0] for stem, paths in by_stem.items() if len(paths) == 1}, problems


def mask_from_bytes(data: bytes, threshold: int = DEFAULT_THRESHOLD) -> np.ndarray | None:
    """HxW bool mask (grayscale > threshold) of image bytes, or None when they cannot be decoded."""
    raw = np.frombuffer(data, np.uint8)
    gray = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE) if raw.size else None
    return None if gray is None else gray > threshold


# Where a prediction comes from: a mask file, or an image segmented on the spot (its mask, or a problem).
Predictor = Callable[[Path], "np.ndarray | str"]


def from_mask_files(threshold: int) -> Predictor:
    def predict(path: Path) -> np.ndarray | str:
        try:
            # Bytes and imdecode, not imread: imread cannot open non-ASCII paths on every platform.
            mask = mask_from_bytes(path.read_bytes(), threshold)
        except OSError:
            mask = None
        return f"cannot read {path} as an image" if mask is None else mask

    return predict


def from_images(segmenter: Segmenter, limits: DecodeLimits = DEFAULT_LIMITS) -> Predictor:
    """Each image segmented with the model's defaults; its mask as the PNG every caller gets, read back."""

    def predict(path: Path) -> np.ndarray | str:
        try:
            result = segment(segmenter, path.read_bytes(), SegmentRequest(outputs=("mask",)), limits)
        except (ImageInputError, PromptOutsideImage) as exc:
            return f"cannot segment {path}: {exc}"
        except OSError as exc:
            return f"cannot read {path} ({exc.strerror or exc})"
        mask = mask_from_bytes(result.pngs["mask"])
        return f"cannot read the mask of {path}" if mask is None else mask

    return predict


def _score_pair(name: str, pred_path: Path, gt_path: Path, threshold: int, predictor: Predictor) -> ImageResult | str:
    """The pair's result, or a problem message."""
    pred = predictor(pred_path)
    if isinstance(pred, str):
        return f"{name}: {pred}"
    gt = from_mask_files(threshold)(gt_path)
    if isinstance(gt, str):
        return f"{name}: cannot read {gt_path} as an image"
    if pred.shape != gt.shape:
        (ph, pw), (gh, gw) = pred.shape, gt.shape
        return f"{name}: size mismatch: prediction is {pw}x{ph}, ground truth is {gw}x{gh} (width x height)"
    return ImageResult(name, pred_path, gt_path, pixel_metrics(pred, gt))


def evaluate_dirs(
    pred_dir: Path, gt_dir: Path, threshold: int = DEFAULT_THRESHOLD, predictor: Predictor | None = None
) -> EvaluationReport:
    """Score every prediction in pred_dir (mask files, or with `predictor` images it segments) against the
    same-stem mask in gt_dir.

    Raises EvaluationError when a folder is missing or holds no masks; every other failure (unpaired,
    ambiguous, unreadable or differently sized files) becomes one line in the report's problems.
    """
    predictor = predictor or from_mask_files(threshold)
    preds, pred_problems = _mask_files(Path(pred_dir), "prediction")
    gts, gt_problems = _mask_files(Path(gt_dir), "ground truth")
    report = EvaluationReport(problems=pred_problems + gt_problems)
    report.problems += [
        f"{stem}: no ground truth for prediction {preds[stem]}" for stem in sorted(preds.keys() - gts.keys())
    ]
    report.problems += [
        f"{stem}: no prediction for ground truth {gts[stem]}" for stem in sorted(gts.keys() - preds.keys())
    ]
    for stem in sorted(preds.keys() & gts.keys()):
        outcome = _score_pair(stem, preds[stem], gts[stem], threshold, predictor)
        if isinstance(outcome, str):
            report.problems.append(outcome)
        else:
            report.results.append(outcome)
    return report


def report_csv(report: EvaluationReport) -> str:
    """One CSV row per scored image: name, pred, gt, tp, fp, fn, tn, precision, recall, f1, iou."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "pred", "gt", *(f.name for f in fields(Metrics))])
    for result in report.results:
        writer.writerow([result.name, result.pred, result.gt, *astuple(result.metrics)])
    return buffer.getvalue()


def summary_lines(report: EvaluationReport) -> list[str]:
    """One line per mean score, e.g. 'mean IoU 0.6470 over 12 images'."""
    count = len(report.results)
    noun = "image" if count == 1 else "images"
    return [f"mean {_LABELS[score]} {value:.4f} over {count} {noun}" for score, value in report.means.items()]


# ---------------------------------------------------------------- command line


def threshold_argument(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 254:
        raise argparse.ArgumentTypeError("must be an integer from 0 to 254 (foreground is value > threshold)")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pred", type=Path, help="folder of predicted masks")
    source.add_argument("--images", type=Path, help="folder of images to segment with --model and score")
    add_model_flags(parser)
    parser.add_argument("--gt", type=Path, required=True, help="folder of ground-truth masks (same file stems)")
    parser.add_argument("--out", type=Path, help="write per-image metrics to this CSV file")
    parser.add_argument(
        "--threshold",
        type=threshold_argument,
        default=DEFAULT_THRESHOLD,
        help=f"foreground is grayscale value > threshold (default {DEFAULT_THRESHOLD})",
    )


def _predictor(args: argparse.Namespace) -> Predictor | None:
    """None for --pred; for --images, the model of --model loaded (UsageError, or ModelLoadError)."""
    if args.images is None:
        return None
    from vreyesam.runtime.tools.predict import load_model, settings_from_args

    settings = settings_from_args(args)
    return from_images(load_model(settings), settings.decode_limits)


def run(args: argparse.Namespace) -> int:
    from vreyesam.runtime.model.artifacts import ModelLoadError

    try:
        predictor = _predictor(args)
        report = evaluate_dirs(args.pred or args.images, args.gt, args.threshold, predictor)
    except (EvaluationError, UsageError, SettingsError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    if not report.results:
        print("error: no image could be scored", file=sys.stderr)
        return 2
    for line in summary_lines(report):
        print(line)
    if args.out is not None:
        try:
            write_bytes_atomic(args.out, report_csv(report).encode())
        except OSError as exc:
            print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"wrote per-image metrics to {args.out}")
    return 1 if report.problems else 0
