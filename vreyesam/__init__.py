"""VREyeSAM: SAM2 Hiera-S iris segmentation, exported to ONNX and served without torch.

`vreyesam.export` (needs torch and sam2) writes a model directory; `vreyesam.runtime` (onnxruntime only)
reads it. The two share nothing but the manifest contract in `vreyesam.runtime.manifest`.
"""

__version__ = "0.1.0"
