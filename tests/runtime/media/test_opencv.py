"""The door to OpenCV: its image limits are the deployment's, or nothing that decodes starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vreyesam.runtime.media import opencv
from vreyesam.runtime.settings import DecodeLimits


def _python(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_importing_the_runtime_loads_no_opencv_and_first_use_applies_the_settings_limits() -> None:
    script = """
import sys
import vreyesam.runtime.http.server, vreyesam.runtime.tools.predict, vreyesam.runtime.model.segment
assert "cv2" not in sys.modules and "torch" not in sys.modules
from vreyesam.runtime.media import decode
from vreyesam.runtime.media.opencv import cv2
import numpy as np
ok, png = cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))
try:
    decode._cv2_decode(png.tobytes())  # OpenCV's own check, behind the header check
except decode.UndecodableImage:
    print("refused by OpenCV")
"""
    result = _python(script, {"VREYESAM_MAX_WIDTH": "16", "VREYESAM_MAX_HEIGHT": "16", "VREYESAM_MAX_PIXELS": "256"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "refused by OpenCV"


def test_opencv_loaded_before_the_door_is_refused() -> None:
    script = """
import cv2
from vreyesam.runtime.media.opencv import OpenCvLimitsError, require_limits
from vreyesam.runtime.settings import DecodeLimits
try:
    require_limits(DecodeLimits())
except OpenCvLimitsError as exc:
    print(exc)
"""
    result = _python(script)
    assert result.returncode == 0, result.stderr
    assert "OpenCV was loaded before its image limits were set" in result.stdout


def test_other_limits_after_loading_are_refused_the_same_ones_accepted() -> None:
    opencv.load()  # the test session loads it through the door with the defaults
    opencv.require_limits(DecodeLimits())
    with pytest.raises(opencv.OpenCvLimitsError):
        opencv.require_limits(DecodeLimits(100, 100, 10_000))


def test_limits_environment_gives_both_sides_the_larger_dimension() -> None:
    assert opencv.limits_environment(DecodeLimits(100, 300, 5000)) == {
        "OPENCV_IO_MAX_IMAGE_PIXELS": "5000",
        "OPENCV_IO_MAX_IMAGE_WIDTH": "300",
        "OPENCV_IO_MAX_IMAGE_HEIGHT": "300",
    }
