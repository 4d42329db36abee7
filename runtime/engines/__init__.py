"""Engines: the inference libraries behind one small protocol (`Graph`), and the choice of device.

onnxruntime (CPU or CUDA execution provider) and OpenVINO (bf16 on CPUs with native bf16) run the same ONNX
graphs. The model room sees only `Graph`: named values in, named values out, and `to_host` for the values
it must read. A value may live on the device (an engine's own type), so stages can hand one graph's
outputs to the next without a copy; only what leaves the model is copied to the host. `Rows` views of a
batch value let several images share one run without copies (written in place with `run(..., into=...)`).
Depends on nothing else in the runtime but the vocabulary.
"""
