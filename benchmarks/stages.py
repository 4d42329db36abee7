"""Per-stage timings of this runtime on one execution provider (where the time goes), the work rate of each
network (GFLOP/s), and encoder batching.

python -m benchmarks.stages --model DIR [--device cpu|cuda] [--precision auto] [--runs 20] [--batch 8]
    [--decoder-batch 0] [--threads 0]

GFLOP/s come from the matrix work counted in the graphs themselves (`benchmarks.flops`, which needs the
`onnx` package: run from the builder environment; elsewhere they are left out).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from vreyesam.runtime.model.loader import LoadOptions, load_segmenter
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.tools import synth

POINTS = 30  # the procedure's default prompt count, which every prediction below uses


def _work_rates(model: Path, medians: dict[str, float]) -> dict[str, float]:
    """GFLOP per network and GFLOP/s at the stage medians (empty without the `onnx` package)."""
    try:
        from benchmarks.flops import network_gflop
    except ImportError:
        return {}
    work = network_gflop(model, POINTS)
    rates = {f"{name}_gflop": round(gflop, 1) for name, gflop in work.items()}
    rates.update({f"{name}_gflop_per_s": round(gflop / medians[name] * 1000.0, 1) for name, gflop in work.items()})
    return rates


def _batched_encoder_ms(segmenter: Segmenter, image: np.ndarray, batch: int) -> float:
    prepared = segmenter.prepare(image)
    tensor = segmenter.preprocess.to_host(prepared.model_input)
    stacked = np.repeat(tensor, batch, axis=0)
    segmenter.encoder.run({"image": stacked})
    mark = time.perf_counter()
    for _ in range(3):
        segmenter.encoder.run({"image": stacked})
    return (time.perf_counter() - mark) * 1000.0 / 3 / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8, help="encoder batch for the batching figure (0: skip)")
    parser.add_argument("--decoder-batch", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = time.perf_counter()
    options = LoadOptions(
        device=args.device,
        precision=args.precision,
        intra_op_threads=args.threads,
        decoder_batch=args.decoder_batch,
        allow_random_weights=True,
    )
    segmenter = load_segmenter(args.model, options)
    load_s = time.perf_counter() - started
    _, image, _ = synth.generate(seed=5, n=1, width=400, height=300)[0]
    for _ in range(3):
        segmenter.predict(image)
    stages: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for name, value in segmenter.predict(image).timings.as_dict().items():
            stages.setdefault(name, []).append(value)
    medians = {name: round(float(np.median(values)), 2) for name, values in stages.items()}
    report = {
        "provider": segmenter.engines,
        "precision": segmenter.precision,
        "decoder_batch": segmenter.decoder_batch,
        "load_s": round(load_s, 2),
        "median_ms": medians,
        "decoder_ms_per_prompt": round(medians["decoder"] / POINTS, 2),
        **_work_rates(args.model, medians),
        "load_average_before_after": [load_before, os.getloadavg()],
    }
    if args.batch:
        batched = _batched_encoder_ms(segmenter, image, args.batch)
        report[f"encoder_ms_per_image_at_batch_{args.batch}"] = round(batched, 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
