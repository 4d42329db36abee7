"""Torch-free serving runtime: reads a model directory and runs the VREyeSAM procedure on onnxruntime."""
