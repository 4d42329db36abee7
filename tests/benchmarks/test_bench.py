"""The benchmark's ratios: every row against every torch reference that ran, the CPU build's included."""

from __future__ import annotations

import pytest

from benchmarks.bench import add_ratios


def test_ratios_against_each_torch_reference_present() -> None:
    rows: list[dict[str, object]] = [
        {"contestant": "torch-fp32", "precision": "fp32", "e2e_p50_ms": 6000.0},
        {"contestant": "torch-cpu-fp32", "precision": "fp32", "e2e_p50_ms": 4500.0},
        {"contestant": "torch-cpu-bf16", "precision": "bf16 autocast", "e2e_p50_ms": 3600.0},
        {"contestant": "ort-cpu-bf16-encoder", "precision": "bf16-encoder", "e2e_p50_ms": 900.0},
        {"contestant": "http-cpu", "precision": "bf16-encoder", "e2e_p50_ms": 945.0},
    ]
    add_ratios(rows)
    ours = rows[3]
    assert ours["speedup_vs_torch-cpu-fp32"] == pytest.approx(5.0)
    assert ours["speedup_vs_torch-cpu-bf16"] == pytest.approx(4.0)
    assert ours["speedup_vs_torch-fp32"] == pytest.approx(6000.0 / 900.0)
    assert "speedup_vs_torch-bf16" not in ours  # that reference did not run
    assert rows[4]["http_overhead"] == pytest.approx(0.05)
