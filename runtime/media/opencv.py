"""The one door to OpenCV: it is loaded with this deployment's image limits, or a command refuses to start.

OpenCV has decode limits of its own (`OPENCV_IO_MAX_IMAGE_PIXELS`, `..._WIDTH`, `..._HEIGHT`), a second line
of defence behind the header check of `decode`. It reads them from the environment once, when its extension
is first imported, so they hold only if they were set before that. Every runtime module therefore reaches
cv2 through this module (`from vreyesam.runtime.media.opencv import cv2`: the module, loaded at its first
use) or `load()`, which sets them from the environment's decode limits (`VREYESAM_MAX_*`) before the
first import (tests/test_boundaries.py refuses `import cv2` anywhere else in the runtime), and every entry
point (serve, predict, predict --ray, the Ray replica, the Space image's command) calls `require_limits`
first: if something outside this door loaded OpenCV before, with whatever limits, it raises
`OpenCvLimitsError` and the command stops with that message instead of running with OpenCV's defaults.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

from vreyesam.runtime.settings import DecodeLimits, load_settings


class OpenCvLimitsError(RuntimeError):
    """OpenCV was loaded before its image limits were set: they would not be in effect."""


_loaded_with: dict[str, str] | None = None  # the limits OpenCV was loaded with, when this door loaded it


def limits_environment(limits: DecodeLimits) -> dict[str, str]:
    """OpenCV's variables for `limits`. OpenCV checks the stored size, before EXIF orientation, so both of
    its dimension limits get the larger of ours."""
    side = str(max(limits.max_width, limits.max_height))
    return {
        "OPENCV_IO_MAX_IMAGE_PIXELS": str(limits.max_pixels),
        "OPENCV_IO_MAX_IMAGE_WIDTH": side,
        "OPENCV_IO_MAX_IMAGE_HEIGHT": side,
    }


def require_limits(limits: DecodeLimits) -> None:
    """Make sure OpenCV runs with `limits`: set them if it is not loaded yet; OpenCvLimitsError if it was
    loaded otherwise than through `load()` with these limits."""
    wanted = limits_environment(limits)
    if "cv2" in sys.modules:
        if _loaded_with != wanted:
            raise OpenCvLimitsError(
                "OpenCV was loaded before its image limits were set, so they would not be in effect; "
                "nothing may import cv2 before the command starts"
            )
        return
    os.environ.update(wanted)


def load() -> ModuleType:
    """The cv2 module, loaded on first use with the environment's decode limits in effect."""
    global _loaded_with
    if "cv2" not in sys.modules:
        require_limits(load_settings().decode_limits)
        import cv2  # the only import of cv2 in the runtime

        _loaded_with = {name: os.environ[name] for name in limits_environment(DecodeLimits())}
        return cv2
    return sys.modules["cv2"]


class _OnFirstUse:
    """Stands for the cv2 module and loads it (through `load`) when an attribute is first read, so that
    importing a module that uses OpenCV loads nothing."""

    def __getattr__(self, name: str) -> Any:
        return getattr(load(), name)


cv2: Any = _OnFirstUse()
