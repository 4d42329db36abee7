"""`vreyesam predict`: segment image files and folders into PNG masks, with a summary CSV.

For each input image OUT gets binary/<stem>.png (0/255), probability/<stem>.png (0-255 gray),
uncertainty/<stem>.png (PLASMA colour map) and, with --overlay, overlay/<stem>.png; OUT/summary.csv has
one row per input. Every file is written atomically (temporary file + os.replace), so an interrupted run
leaves no half-written file and `--resume` can pick up where it stopped.

Exit codes: 0 every input segmented (or skipped by --resume); 1 some input failed (each is named on
stderr, the others are still segmented) or the model failed to load; 2 nothing was started: a usage
error, a missing model directory or INPUT, no images found, an unusable OUT.

Each image takes the one per-image path (`tools.outputs.segment_file` over `model.segment`), here or on a
Ray cluster's actors (`cluster.predict`); the bookkeeping around it (`Batch`) is shared by both.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from vreyesam.runtime.media.files import write_bytes_atomic
from vreyesam.runtime.media.opencv import OpenCvLimitsError, require_limits
from vreyesam.runtime.model.artifacts import ModelLoadError
from vreyesam.runtime.model.loader import load_options, load_segmenter
from vreyesam.runtime.model.procedure import MAX_POINTS, InvalidRequest
from vreyesam.runtime.model.segment import SegmentRequest
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import DecodeLimits, Settings, SettingsError, load_settings
from vreyesam.runtime.tools.inputs import InputFile, UsageError, find_inputs
from vreyesam.runtime.tools.model_flags import add_cluster_flags, add_model_flags, model_overrides
from vreyesam.runtime.tools.outputs import Segmented, file_request, output_path, segment_file, write_pngs
from vreyesam.runtime.tools.summary import (
    COLUMNS,
    FAILED,
    OK,
    SKIPPED,
    SUMMARY_NAME,
    Row,
    merge_rows,
    read_summary,
    summary_csv,
    summary_row,
)
from vreyesam.runtime.vocabulary import IMAGE_SUFFIXES

PROG = "vreyesam predict"
# summary.csv is rewritten at the end of a run and at most this often during it, so that even a killed
# run keeps most of its rows for --resume without rewriting a long CSV after every image.
_SAVE_INTERVAL_S = 10.0


# ---------------------------------------------------------------- the run


@dataclass
class Batch:
    """One run over the inputs: decides what to segment, writes the results, and collects the summary rows.

    The segmenting itself is the caller's (`run_batch`): here, or on a cluster's actors."""

    request: SegmentRequest
    limits: DecodeLimits
    out_dir: Path
    resume: bool = False
    earlier: list[Row] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # wall time of each image segmented
    _claimed: set[str] = field(default_factory=set, init=False)  # casefolded stems given an output name

    def plan(self, inputs: list[InputFile]) -> list[tuple[InputFile, Row | None]]:
        """Each input in order, with its row when it is settled without segmenting (None: to segment)."""
        return [(item, self._decide(item)) for item in inputs]

    def _decide(self, item: InputFile) -> Row | None:
        """A duplicate output name fails, an input done by an earlier run is skipped with --resume."""
        # casefold: on a case-insensitive file system A.png and a.png would overwrite each other's outputs.
        key = item.stem.casefold()
        row = None
        if key in self._claimed:
            row = summary_row(item, FAILED, "duplicate output name: an earlier input has the same file stem")
        elif self.resume and self._outputs_exist(item.stem):
            row = self._skipped(item)
        self._claimed.add(key)
        return row

    def record(self, item: InputFile, result: Segmented) -> Row:
        """Write a segmented input's PNGs (each atomically): its row, failed if they cannot be written."""
        if not result.pngs:
            return result.row
        try:
            write_pngs(self.out_dir, item.stem, result.pngs)
        except OSError as exc:
            return summary_row(item, FAILED, f"cannot write its outputs ({exc.strerror or exc})")
        self.seconds.append(result.seconds)
        return result.row

    def _outputs_exist(self, stem: str) -> bool:
        return all(output_path(self.out_dir, kind, stem).is_file() for kind in self.request.outputs)

    def _skipped(self, item: InputFile) -> Row:
        """A skipped input keeps the statistics of its earlier row, if there is one."""
        row = summary_row(item, SKIPPED)
        earlier = next((r for r in self.earlier if r["stem"] == item.stem and r["status"] != FAILED), None)
        if earlier is not None:
            row.update({column: earlier[column] for column in COLUMNS if column not in {"input", "status"}})
        return row

    def save_summary(self) -> None:
        rows = merge_rows(self.earlier, self.rows) if self.resume else self.rows
        write_bytes_atomic(self.out_dir / SUMMARY_NAME, summary_csv(rows).encode("utf-8"))

    def summary_line(self) -> str:
        counts = {status: sum(row["status"] == status for row in self.rows) for status in (OK, SKIPPED, FAILED)}
        noun = "image" if len(self.rows) == 1 else "images"
        line = f"{len(self.rows)} {noun}: " + ", ".join(f"{count} {status}" for status, count in counts.items())
        if self.seconds:
            line += f"; mean {sum(self.seconds) / len(self.seconds):.2f} s per image"
        return line

    @property
    def failed(self) -> bool:
        return any(row["status"] == FAILED for row in self.rows)


def error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the command line's flags over them; the model directory must exist."""
    settings = load_settings().with_overrides(**model_overrides(args))
    if settings.model_dir is None:
        raise UsageError("no model directory: pass --model DIR or set VREYESAM_MODEL_DIR")
    if not settings.model_dir.is_dir():
        raise UsageError(f"model directory {settings.model_dir} does not exist")
    return settings


def _prepare_out_dir(out_dir: Path, resume: bool) -> list[Row]:
    """Create OUT; with --resume, the rows of its earlier summary.csv."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder {out_dir} ({exc.strerror or exc})") from None
    return read_summary(out_dir / SUMMARY_NAME) if resume else []


def load_model(settings: Settings) -> Segmenter:
    """The settings' model, loaded and self-tested, with OpenCV's image limits in effect; ModelLoadError (a
    printable message) when it cannot be."""
    try:
        require_limits(settings.decode_limits)
    except OpenCvLimitsError as exc:
        raise ModelLoadError(str(exc)) from None
    if settings.model_dir is None:
        raise ModelLoadError("no model directory")
    return load_segmenter(settings.model_dir, load_options(settings))


def _load(settings: Settings) -> Segmenter | None:
    """The loaded model, or None after printing why it cannot be loaded."""
    try:
        return load_model(settings)
    except ModelLoadError as exc:
        error(str(exc))
        return None


def run_batch(
    batch: Batch, planned: list[tuple[InputFile, Row | None]], segment: Callable[[InputFile], Segmented]
) -> None:
    """Record every planned input in order (segmenting those not settled) with a progress bar, saving the
    summary now and then and at the end."""
    last_save = time.monotonic()
    progress = tqdm(planned, desc="predict", unit="image", file=sys.stderr, disable=not sys.stderr.isatty())
    try:
        for item, settled in progress:
            row = settled if settled is not None else batch.record(item, segment(item))
            batch.rows.append(row)
            if row["status"] == FAILED:
                # tqdm.write keeps the message from tearing the progress bar.
                tqdm.write(f"{PROG}: {item.path}: {row['error']}", file=sys.stderr)
            if time.monotonic() - last_save > _SAVE_INTERVAL_S:
                batch.save_summary()
                last_save = time.monotonic()
    finally:
        progress.close()
        batch.save_summary()


def prepare(args: argparse.Namespace) -> tuple[Settings, list[InputFile], Batch]:
    """Settings, inputs and the run's bookkeeping, before any model is loaded; SettingsError or UsageError."""
    try:
        request = file_request(args.overlay, points=args.points, threshold=args.threshold, seed=args.seed)
    except InvalidRequest as exc:  # the bounds of every caller, in their words
        raise UsageError(exc.message) from None
    settings = settings_from_args(args)
    request = replace(request, quality=settings.quality_gate)
    try:
        require_limits(settings.decode_limits)  # here too for --ray: its actors decode, the driver writes
    except OpenCvLimitsError as exc:
        raise UsageError(str(exc)) from None
    inputs = find_inputs(args.inputs, args.recursive, exclude=args.out)
    if not inputs:
        raise UsageError(f"no images found in the inputs ({', '.join(sorted(IMAGE_SUFFIXES))})")
    earlier = _prepare_out_dir(args.out, args.resume)
    batch = Batch(
        request=request,
        limits=settings.decode_limits,
        out_dir=args.out,
        resume=args.resume,
        earlier=earlier,
    )
    return settings, inputs, batch


def finish(batch: Batch, count: int, work: Callable[[], None]) -> int:
    """Run `work` (which records into `batch`), then the summary line and the exit code."""
    try:
        work()
    except OSError as exc:  # summary.csv could not be written
        error(f"cannot write {batch.out_dir / SUMMARY_NAME} ({exc.strerror or exc})")
        return 1
    except KeyboardInterrupt:
        error(f"interrupted after {len(batch.rows)} of {count} images; run again with --resume")
        return 130
    print(batch.summary_line())
    return 1 if batch.failed else 0


def run(args: argparse.Namespace) -> int:
    try:
        settings, inputs, batch = prepare(args)
    except (SettingsError, UsageError) as exc:
        error(str(exc))
        return 2
    segmenter = _load(settings)
    if segmenter is None:
        return 1

    def segment(item: InputFile) -> Segmented:
        return segment_file(segmenter, item, batch.request, batch.limits)

    return finish(batch, len(inputs), lambda: run_batch(batch, batch.plan(inputs), segment))


# ---------------------------------------------------------------- command line


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files and folders of images")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    add_model_flags(parser)
    parser.add_argument("--recursive", action="store_true", help="also take images in subfolders of a folder")
    parser.add_argument(
        "--resume", action="store_true", help="skip inputs whose outputs exist and keep the summary's earlier rows"
    )
    parser.add_argument("--overlay", action="store_true", help="also write the mask over the image")
    # Types here; bounds in SegmentRequest, the same as the API's (a value out of them is a usage error).
    parser.add_argument("--points", type=int, help=f"prompt points per image, 1 to {MAX_POINTS} (default: the model's)")
    parser.add_argument("--threshold", type=float, help="probability threshold, 0 to 1 (default: the model's)")
    parser.add_argument("--seed", type=int, help="seed of the prompt points (default: the model's)")
    add_cluster_flags(parser)
