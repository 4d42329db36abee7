"""Per-stage timings of this runtime on one execution provider (where the time goes), and encoder batching.

python -m benchmarks.stages --model DIR [--device cpu|cuda] [--runs 20] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vreyesam.runtime.model.loader import LoadOptions, load_segmenter
from vreyesam.runtime.tools import synth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--decoder-batch", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    segmenter = load_segmenter(
        args.model, LoadOptions(device=args.device, decoder_batch=args.decoder_batch, allow_random_weights=True)
    )
    load_s = time.perf_counter() - started
    _, image, _ = synth.generate(seed=5, n=1, width=400, height=300)[0]
    for _ in range(3):
        segmenter.predict(image)
    stages: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for name, value in segmenter.predict(image).timings.as_dict().items():
            stages.setdefault(name, []).append(value)
    prepared = segmenter.prepare(image)
    tensor = segmenter.preprocess.to_host(prepared.model_input)
    batch = np.repeat(tensor, args.batch, axis=0)
    segmenter.encoder.run({"image": batch})
    mark = time.perf_counter()
    for _ in range(3):
        segmenter.encoder.run({"image": batch})
    batched_ms = (time.perf_counter() - mark) * 1000.0 / 3 / args.batch
    report = {
        "provider": segmenter.engines,
        "decoder_batch": segmenter.decoder_batch,
        "load_s": round(load_s, 2),
        "median_ms": {name: round(float(np.median(values)), 2) for name, values in stages.items()},
        f"encoder_ms_per_image_at_batch_{args.batch}": round(batched_ms, 2),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
