"""Torch-free serving runtime: reads a model directory and runs the VREyeSAM procedure on onnxruntime.

Rooms, top to bottom (a room imports only rooms below it; the contract is `[tool.vreyesam.boundaries]` in
pyproject.toml, checked by tests/test_boundaries.py):

    cluster/  the Ray paths (the `ray` extra): Serve deployment, proxy gate, Ray Data batch
    tools/    the command-line programs: serve, predict, evaluate, synth, space
    http/     the predict-only API and the page for people: app (state, API keys), routes, page, error
              mapping, body limit, logs, admission, server
    model/    one image's path (segment), model directory read once and verified, variants, golden self-test,
              the procedure's stages
    engines/  onnxruntime and OpenVINO behind one `Graph` protocol; device -> execution providers
    media/    (beside the layers, imports no room) decoding untrusted images, rendering PNG/RLE, atomic files,
              the one door to OpenCV
    telemetry/ (beside the layers, imports no room) Prometheus metrics (and traces) of the serving process

The kernel every room may import: `manifest` (the model-directory contract shared with the exporter),
`vocabulary` (devices, precisions, output kinds, image suffixes) and `settings` (the environment, read in
one place). `surface` is the exporter's only door into the rooms.
"""
