"""Builder side: SAM2 Hiera-S + VREyeSAM weights -> verified ONNX model directory (needs torch and sam2)."""
