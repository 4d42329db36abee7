"""VREyeSAM: SAM2 Hiera-S iris segmentation, exported to ONNX and served without torch.

`vreyesam.export` (needs torch and sam2) writes a model directory; `vreyesam.runtime` (onnxruntime only)
reads it. The two share nothing but the manifest contract in `vreyesam.runtime.manifest`.
"""

import os

__version__ = "0.1.0"

# onnxruntime 1.32 on Linux sends usage telemetry: at import it writes a session file into the temporary
# folder and a device id and an event database under ~/.cache/Microsoft, and tries to upload them. A model
# server has no business calling home, and this is the first thing any of its commands imports, before
# onnxruntime: off unless the operator sets the variable (the images set it too).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
