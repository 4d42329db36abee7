"""`summary.csv` of `vreyesam predict`: one row per input, kept across `--resume` runs."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from vreyesam.runtime.media.iris import BBOX_KEYS, FittedEllipse, IrisGeometry
from vreyesam.runtime.media.quality import ImageMeasures, iris_block
from vreyesam.runtime.model.segment import Segmentation
from vreyesam.runtime.tools.inputs import InputFile, UsageError
from vreyesam.runtime.vocabulary import STAGES

SUMMARY_NAME = "summary.csv"
OK, FAILED, SKIPPED = "ok", "failed", "skipped"
TIMED_STAGES = (*STAGES, "total")


def _iris_columns() -> tuple[str, ...]:
    """The iris block of the answers, flattened: `iris_ellipse_x`, ..., `iris_bbox_width`, ...,
    `iris_specular_fraction`."""
    columns: list[str] = []
    for item in (*fields(IrisGeometry), *fields(ImageMeasures)):
        if item.name in ("ellipse", "pupil"):
            columns += [f"iris_{item.name}_{part.name}" for part in fields(FittedEllipse)]
        elif item.name == "bbox":
            columns += [f"iris_bbox_{key}" for key in BBOX_KEYS]
        else:
            columns.append(f"iris_{item.name}")
    return tuple(columns)


IRIS_COLUMNS = _iris_columns()
COLUMNS = (
    "input",
    "stem",
    "width",
    "height",
    "status",
    "error",
    "coverage_percent",
    "area_px",
    "score_mean",
    "score_max",
    *IRIS_COLUMNS,
    "quality_accepted",
    "quality_reasons",  # separated by ";"
    *(f"{stage}_ms" for stage in TIMED_STAGES),
)

IDENTITY = ("input", "stem", "status")

Row = dict[str, str]


def summary_row(
    item: InputFile,
    status: str,
    error: str = "",
    result: Segmentation | None = None,
) -> Row:
    row = dict.fromkeys(COLUMNS, "")
    row.update(input=item.relative.as_posix(), stem=item.stem, status=status, error=error)
    if result is not None:
        row.update(_result_fields(result))
    return row


def _result_fields(result: Segmentation) -> Row:
    stats = result.statistics
    row = {
        "width": str(result.width),
        "height": str(result.height),
        "coverage_percent": f"{stats.coverage_percent:.4f}",
        "area_px": str(stats.area_px),
        "score_mean": f"{stats.score_mean:.6f}",
        "score_max": f"{stats.score_max:.6f}",
    }
    row.update(flat_row(iris_block(result.iris, result.measures), "iris_"))
    row.update(quality_accepted=str(result.quality.accepted).lower(), quality_reasons=";".join(result.quality.reasons))
    row.update({f"{stage}_ms": f"{result.timings_ms.get(stage, 0.0):.1f}" for stage in TIMED_STAGES})
    return row


def flat_row(block: Mapping[str, Any], prefix: str) -> Row:
    """A nested answer block as columns; a null leaves its columns empty."""
    row: Row = {}
    for key, value in block.items():
        if isinstance(value, Mapping):
            row.update(flat_row(value, f"{prefix}{key}_"))
        elif value is not None:
            row[f"{prefix}{key}"] = str(value)
    return row


def read_summary(path: Path) -> list[Row]:
    """Rows of an earlier summary.csv, [] when there is none.

    Raises UsageError when the file exists but cannot be read as one: --resume would otherwise replace
    it and lose the rows it holds.
    """
    try:
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
        # Only what identifies a row is required: a summary of an earlier version (other timing columns)
        # is still resumed, its missing columns empty.
        if not set(IDENTITY) <= set(reader.fieldnames or ()):
            raise UsageError(f"{path} does not have the columns of a prediction summary; move it away")
        return [{column: row.get(column) or "" for column in COLUMNS} for row in reader]
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot read {path} ({exc}); move it away or run without --resume") from None


def summary_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def merge_rows(earlier: list[Row], current: list[Row]) -> list[Row]:
    """This run's rows after the earlier rows of stems this run did not touch (so none of those is lost)."""
    touched = {row["stem"] for row in current}
    return [row for row in earlier if row["stem"] not in touched] + current
