"""The builder-side tests need torch, sam2 and torchvision (Meta's SAM2ImagePredictor is the reference).

In the torch-free serving environment they are not collected; CI runs them in the builder environment
with VREYESAM_TEST_REQUIRE_TORCH=1, where a missing dependency is an error rather than a silent skip.
"""

from __future__ import annotations

import importlib.util
import os

_NEEDED = ("torch", "torchvision", "sam2", "onnx")
_MISSING = [name for name in _NEEDED if importlib.util.find_spec(name) is None]

if _MISSING:
    if os.environ.get("VREYESAM_TEST_REQUIRE_TORCH") == "1":
        raise RuntimeError(f"builder tests need {', '.join(_MISSING)}")
    collect_ignore_glob = ["test_*.py"]
