"""The throughput benchmark measures real servers: one layout without and with encoder batching, answered
200 throughout (a refused request fails the run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import throughput

# The servers run from this interpreter: the serving environment's (the builder's has no FastAPI).
pytest.importorskip("fastapi", reason="the throughput benchmark's servers need the serving environment")


def test_layouts_without_and_with_encoder_batching(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    argv = ["--model", str(model_dir), "--layouts", "1x2", "--encoder-batches", "1,2", "--clients", "2"]
    assert throughput.main([*argv, "--requests", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and set(report["layouts"]) == {"1x2", "1x2 batch 2"}
    for figures in report["layouts"].values():
        assert figures["clients_2"] > 0
