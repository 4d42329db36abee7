"""CI's layer scan (.ci/layer_scan.py), which proves the Space image holds no plaintext graph: it must find
what is there, also across its chunk boundaries and inside gzip layers, and report what must be there but
is not. Made-up OCI layouts stand in for the image (the image itself is scanned in CI's image stage)."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCAN = Path(__file__).resolve().parents[1] / ".ci" / "layer_scan.py"
spec = importlib.util.spec_from_file_location("layer_scan", SCAN)
assert spec is not None and spec.loader is not None
layer_scan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(layer_scan)

SECRET = b"\x08\x08\x12\x07pytorch\x1a\x062.13.0:\xd2\x9a\x01" + bytes(range(200))


def _layer(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _oci(tmp_path: Path, *layers: bytes) -> Path:
    blobs = tmp_path / "oci" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for index, layer in enumerate(layers):
        (blobs / f"{index:064x}").write_bytes(layer)
    return tmp_path / "oci"


def _spec(absent: bytes, present: bytes) -> dict:
    return {"absent": {"graph": absent.hex()}, "present": {"manifest": present.hex()}}


def test_a_clean_image_passes(tmp_path: Path) -> None:
    oci = _oci(tmp_path, _layer({"opt/model/manifest.json": b'{"sha256": "abc123"}'}), os.urandom(4096))
    assert layer_scan.check(oci, _spec(SECRET, b"abc123")) == []


@pytest.mark.parametrize("compress", [False, True])
def test_a_plaintext_graph_is_found_in_any_layer(tmp_path: Path, compress: bool) -> None:
    layer = _layer({"opt/model/encoder.onnx": os.urandom(1000) + SECRET + os.urandom(1000), "m": b"abc123"})
    oci = _oci(tmp_path, os.urandom(100), gzip.compress(layer) if compress else layer)
    failures = layer_scan.check(oci, _spec(SECRET, b"abc123"))
    assert len(failures) == 1 and failures[0].startswith("graph: found in "), failures


def test_a_needle_across_a_chunk_boundary_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layer_scan, "CHUNK", 64)
    blob = os.urandom(64 - 10) + SECRET + os.urandom(300)  # starts 10 bytes before the first chunk ends
    assert layer_scan.check(_oci(tmp_path, blob + b"abc123"), _spec(SECRET, b"abc123")) == [f"graph: found in {0:064x}"]


def test_what_must_be_there_is_reported_missing(tmp_path: Path) -> None:
    failures = layer_scan.check(_oci(tmp_path, os.urandom(512)), _spec(SECRET, b"abc123"))
    assert failures == ["manifest: not found in any blob (is this the image?)"]
    assert layer_scan.check(_oci(tmp_path / "x", b"abc"), {"absent": {"empty": ""}}) == [
        "an empty needle matches everything"
    ]


def test_the_command_exits_1_on_a_finding(tmp_path: Path) -> None:
    oci = _oci(tmp_path, SECRET + b"abc123")
    needles = tmp_path / "needles.json"
    needles.write_text(json.dumps(_spec(SECRET, b"abc123")))
    found = subprocess.run([sys.executable, str(SCAN), str(oci), str(needles)], capture_output=True, text=True)
    assert found.returncode == 1 and found.stderr.startswith("layer scan: graph: found in "), found.stderr
    needles.write_text(json.dumps(_spec(b"not-there", b"abc123")))
    clean = subprocess.run([sys.executable, str(SCAN), str(oci), str(needles)], capture_output=True, text=True)
    assert clean.returncode == 0 and "none holds any of 1 plaintext needles" in clean.stdout, clean.stderr
