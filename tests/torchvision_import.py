"""torchvision beside the CPU build of torch, for the tests' and the benchmark's reference (Meta's predictor).

The builder's torch is the model image's: the CPU build (2.13.0+cpu), which no registry publishes a
torchvision for. PyPI's torchvision of the same release imports its C++ operators at import time and fails
beside another build of torch ("operator torchvision::nms does not exist"). Meta's SAM2ImagePredictor uses
only torchvision's pure-Python transforms, so declaring the two operator schemas torchvision registers fake
kernels for lets it import and run. A reference's workaround only: the runtime has no torch at all, and the
exporter never imports torchvision (export/reference.py).
"""

from __future__ import annotations

import sys


def import_torchvision() -> None:
    """Import torchvision (once); beside a torch build it was not built for, after declaring its schemas."""
    import torch

    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        for name in ("nms", "qnms"):
            torch.library.define(f"torchvision::{name}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        for module in [name for name in sys.modules if name.startswith("torchvision")]:
            del sys.modules[module]
        import torchvision  # noqa: F401
