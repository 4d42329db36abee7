"""`summary.csv` of `vreyesam predict`: one row per input, kept across `--resume` runs."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from vreyesam.runtime.model.segment import Segmentation
from vreyesam.runtime.tools.inputs import InputFile, UsageError
from vreyesam.runtime.vocabulary import STAGES

SUMMARY_NAME = "summary.csv"
OK, FAILED, SKIPPED = "ok", "failed", "skipped"
TIMED_STAGES = (*STAGES, "total")
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
    fields = {
        "width": str(result.width),
        "height": str(result.height),
        "coverage_percent": f"{stats.coverage_percent:.4f}",
        "area_px": str(stats.area_px),
        "score_mean": f"{stats.score_mean:.6f}",
        "score_max": f"{stats.score_max:.6f}",
    }
    fields.update({f"{stage}_ms": f"{result.timings_ms.get(stage, 0.0):.1f}" for stage in TIMED_STAGES})
    return fields


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
