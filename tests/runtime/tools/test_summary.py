"""summary.csv's rows: one column per number of the answer, the iris block flattened, nulls left empty, the
verdict as two columns."""

from __future__ import annotations

from pathlib import Path

from vreyesam.runtime.media.iris import NO_IRIS, FittedEllipse, IrisGeometry
from vreyesam.runtime.media.quality import NO_IRIS_QUALITY, NO_MEASURES, ImageMeasures, Quality
from vreyesam.runtime.model.procedure import MaskStatistics
from vreyesam.runtime.model.segment import Segmentation
from vreyesam.runtime.model.segmenter import Parameters
from vreyesam.runtime.tools.inputs import InputFile
from vreyesam.runtime.tools.summary import COLUMNS, IRIS_COLUMNS, OK, summary_row

IRIS = IrisGeometry(
    ellipse=FittedEllipse(200.5, 150.25, 40.0, 35.5, 12.5, 0.4, 0.8),
    pupil=FittedEllipse(201.0, 151.0, 12.0, 11.0, 10.0, 0.3, 1.0),
    diameter_px=80.0,
    bbox=(160, 118, 81, 60),
    components=1,
    offgaze_score=0.4602,
    orientation_deg=3.5,
    occlusion90=0.81,
    occlusion30=0.97,
)


def _row(iris: IrisGeometry, measures: ImageMeasures, quality: Quality) -> dict[str, str]:
    result = Segmentation(
        width=400,
        height=300,
        parameters=Parameters(points=30, threshold=0.2, seed=3, prompts="sampled"),
        statistics=MaskStatistics(coverage_percent=4.0, area_px=4800, score_mean=0.5, score_max=0.9),
        timings_ms={},
        iris=iris,
        measures=measures,
        quality=quality,
    )
    return summary_row(InputFile(Path("in/eye.png"), Path("eye.png")), OK, result=result)


def test_every_number_of_the_iris_has_its_column() -> None:
    row = _row(IRIS, ImageMeasures(0.0412, 0.003), Quality(False, ("off_gaze", "specular")))
    assert tuple(row) == COLUMNS  # no field without a column
    assert all(row[column] for column in IRIS_COLUMNS)
    assert (row["iris_ellipse_x"], row["iris_ellipse_semi_minor"], row["iris_pupil_angle_deg"]) == (
        "200.5",
        "35.5",
        "10.0",
    )
    assert [row[f"iris_bbox_{key}"] for key in ("x", "y", "width", "height")] == ["160", "118", "81", "60"]
    assert (row["iris_diameter_px"], row["iris_occlusion90"], row["iris_occlusion30"]) == ("80.0", "0.81", "0.97")
    assert (row["iris_sharpness_score"], row["iris_specular_fraction"]) == ("0.0412", "0.003")
    assert (row["quality_accepted"], row["quality_reasons"]) == ("false", "off_gaze;specular")


def test_no_iris_leaves_its_columns_empty_but_counts_the_parts() -> None:
    row = _row(NO_IRIS, NO_MEASURES, NO_IRIS_QUALITY)
    assert tuple(row) == COLUMNS
    assert (row["quality_accepted"], row["quality_reasons"]) == ("false", "no_iris")
    assert row["iris_components"] == "0"
    assert all(row[column] == "" for column in IRIS_COLUMNS if column != "iris_components")
