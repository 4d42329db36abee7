"""The machine's matrix-product rate, and each network's work rate as a share of it.

    python -m benchmarks.matrix_peak [--threads 2] [--bench build-out/bench.json --model DIR]

The rate a CPU reaches on a large matrix product is the ceiling its networks can approach: torch's 4096x4096
`mm` (fp32 and bf16), median of five after a warm-up, with the threads the benchmark gave its contestants.
With a benchmark's JSON and its model, each in-process contestant's encoder and decoder GFLOP/s (work from
`benchmarks.flops`, time from the benchmark's stage medians) is set against the rate of the precision its
graph ran in. `benchmarks.bench` measures this itself, after its contestants, in the same run.
Needs torch (the builder environment).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

SIZE = 4096
# The precision each network of an in-process contestant runs in, by its variant.
BF16_ENCODER = {"bf16", "bf16-encoder"}
BF16_DECODER = {"bf16"}


def native_bf16() -> bool:
    """Whether the CPU has bf16 matrix units (AVX512_BF16 or AMX): elsewhere torch emulates bf16 at a small
    fraction of its fp32 rate, which is no ceiling for anything served here (no bf16 variant runs there)."""
    try:
        with Path("/proc/cpuinfo").open(encoding="ascii", errors="replace") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def matrix_rates(threads: int, size: int = SIZE, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a size x size matrix product in fp32, and in bf16 where the CPU has native bf16, on this
    CPU with `threads` threads."""
    import torch

    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        rates = {}
        precisions = [("fp32", torch.float32), *([("bf16", torch.bfloat16)] if native_bf16() else [])]
        for name, dtype in precisions:
            a = torch.randn(size, size).to(dtype)
            b = torch.randn(size, size).to(dtype)
            torch.mm(a, b)  # warm-up
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                torch.mm(a, b)
                seconds.append(time.perf_counter() - started)
            rates[name] = 2.0 * size**3 / statistics.median(seconds) / 1e9
        return rates
    finally:
        torch.set_num_threads(previous)


def graph_shares(rows: list[dict[str, Any]], model: Path, rates: dict[str, float], prompts: int = 30) -> dict:
    """Per in-process contestant of this runtime: each network's GFLOP/s and its share of the matrix rate of
    the precision it ran in."""
    from benchmarks.flops import network_gflop

    work = network_gflop(model, prompts)
    shares: dict[str, dict[str, float]] = {}
    for row in rows:
        name = str(row["contestant"])
        if not name.startswith("ort-cpu"):
            continue
        variant = str(row.get("precision", "fp32"))
        figures = {}
        for network, precision in (
            ("encoder", "bf16" if variant in BF16_ENCODER else "fp32"),
            ("decoder", "bf16" if variant in BF16_DECODER else "fp32"),
        ):
            rate = work[network] / float(row[f"{network}_ms"]) * 1000.0
            figures[f"{network}_gflop_per_s"] = round(rate, 1)
            figures[f"{network}_share_of_{precision}_peak"] = round(rate / rates[precision], 3)
        shares[name] = figures
    return {"gflop": {name: round(value, 1) for name, value in work.items()}, "contestants": shares}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="threads for the product (0: torch's default)")
    parser.add_argument("--bench", type=Path, help="a benchmark's JSON, to set its networks against the rates")
    parser.add_argument("--model", type=Path, help="the model that benchmark ran (for the networks' work)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"matrix_gflop_per_s": {k: round(v, 1) for k, v in matrix_rates(args.threads).items()}}
    if args.bench and args.model:
        rows = json.loads(args.bench.read_text())["rows"]
        report.update(graph_shares(rows, args.model, report["matrix_gflop_per_s"]))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
