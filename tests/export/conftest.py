"""The builder-side tests need torch, sam2 and torchvision (Meta's SAM2ImagePredictor is the reference).

Where one of them is missing (the torch-free serving environment), each test module here is reported
skipped with the reason instead of being imported, so the run says what it left out. CI runs them in the
builder environment with VREYESAM_TEST_REQUIRE_TORCH=1: there a missing dependency is a collection error.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.torchvision_import import import_torchvision

_NEEDED = ("torch", "torchvision", "sam2", "onnx")
_MISSING = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
_REQUIRED = os.environ.get("VREYESAM_TEST_REQUIRE_TORCH") == "1"


class _WithoutBuilderDependencies(pytest.Module):
    """A test module of this folder that cannot be imported here: skipped, or an error where required."""

    def collect(self) -> list[pytest.Item]:
        reason = f"builder tests need {', '.join(_MISSING)} (not installed)"
        if _REQUIRED:
            pytest.fail(f"{reason}, and VREYESAM_TEST_REQUIRE_TORCH=1", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if _MISSING:
        return _WithoutBuilderDependencies.from_parent(parent, path=module_path)
    import_torchvision()  # before a test module imports Meta's predictor (beside the CPU build of torch)
    return None
