"""The networks' work rates set against the matrix-product rate of the precision each ran in."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx", reason="the work counter reads ONNX graphs (builder environment)")
pytest.importorskip("torch", reason="the matrix product is torch's (builder environment)")

from benchmarks import matrix_peak
from benchmarks.flops import network_gflop


def test_each_network_against_the_rate_of_its_precision(model_dir: Path) -> None:
    rates = matrix_peak.matrix_rates(threads=1, size=256, repeats=1)
    # bf16 where the CPU has it natively (emulated bf16 is no ceiling for anything served)
    assert set(rates) == ({"fp32", "bf16"} if matrix_peak.native_bf16() else {"fp32"})
    assert all(rate > 0 for rate in rates.values())
    rows = [
        {"contestant": "torch-fp32", "precision": "fp32", "encoder_ms": 1.0, "decoder_ms": 1.0},
        {"contestant": "ort-cpu", "precision": "fp32", "encoder_ms": 2000.0, "decoder_ms": 500.0},
        {"contestant": "ort-cpu-bf16-encoder", "precision": "bf16-encoder", "encoder_ms": 1000.0, "decoder_ms": 500.0},
    ]
    shares = matrix_peak.graph_shares(rows, model_dir, {"fp32": 200.0, "bf16": 400.0})
    work = network_gflop(model_dir, 30)
    assert set(shares["contestants"]) == {"ort-cpu", "ort-cpu-bf16-encoder"}  # this runtime's, in process
    fp32, bf16 = shares["contestants"]["ort-cpu"], shares["contestants"]["ort-cpu-bf16-encoder"]
    assert fp32["encoder_share_of_fp32_peak"] == round(work["encoder"] / 2.0 / 200.0, 3)
    assert bf16["encoder_share_of_bf16_peak"] == round(work["encoder"] / 1.0 / 400.0, 3)
    assert bf16["decoder_share_of_fp32_peak"] == round(work["decoder"] / 0.5 / 200.0, 3)  # its decoder is fp32
