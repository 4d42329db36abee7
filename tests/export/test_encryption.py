"""`vreyesam export --encrypt`: ciphertext at rest, plaintext only in memory, the right key or nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.model_files import open_model_files
from vreyesam.cli import main
from vreyesam.export.builder import _encrypt
from vreyesam.runtime.manifest import GRAPH_ROLES, GRAPHS, MANIFEST_NAME, read_manifest
from vreyesam.runtime.model import crypto
from vreyesam.runtime.model.artifacts import ModelLoadError
from vreyesam.runtime.model.loader import LoadOptions, load_segmenter
from vreyesam.runtime.model.signature import SIGNATURE_NAME


@pytest.fixture(scope="module")
def key() -> bytes:
    return crypto.parse_key(crypto.new_key_text())


@pytest.fixture(scope="module")
def encrypted_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory, key: bytes) -> Path:
    target = tmp_path_factory.mktemp("encrypted") / "model"
    # Without the test model's signature: it signs the files in clear, which encryption replaces.
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns(SIGNATURE_NAME))
    _encrypt(target, read_manifest(target), key)
    return target


def test_graphs_are_ciphertext_and_pinned(encrypted_dir: Path, key: bytes, model_dir: Path) -> None:
    manifest = read_manifest(encrypted_dir)
    assert manifest.encrypted is True
    graphs = [role for role in GRAPH_ROLES if role in manifest.artifacts]
    others = [artifact.file for role, artifact in manifest.artifacts.items() if role not in GRAPH_ROLES]
    assert sorted(p.name for p in encrypted_dir.iterdir()) == sorted(
        [*(f"{role}.onnx.enc" for role in graphs), *others, MANIFEST_NAME]
    )
    assert set(GRAPHS) <= set(graphs) and "golden.npz" in others
    files = open_model_files(encrypted_dir, key=key)  # each file matches its pin
    for role in graphs:
        assert files.take_graph(role) == (model_dir / f"{role}.onnx").read_bytes()  # decrypted to the very graph
    blob = (encrypted_dir / "decoder.onnx.enc").read_bytes()
    assert blob.startswith(crypto.MAGIC) and b"onnx" not in blob[:4096].lower()
    assert key.hex() not in (encrypted_dir / MANIFEST_NAME).read_text()


def test_right_key_serves_wrong_or_missing_key_refused(encrypted_dir: Path, key: bytes) -> None:
    options = LoadOptions(device="cpu", allow_random_weights=True, self_test=False)
    segmenter = load_segmenter(encrypted_dir, LoadOptions(device="cpu", allow_random_weights=True, model_key=key))
    assert segmenter.engines.endswith("CPUExecutionProvider")  # fp32 or a bf16 variant, decrypted in memory
    with pytest.raises(ModelLoadError, match="the model key does not decrypt the model"):
        load_segmenter(encrypted_dir, LoadOptions(**{**options.__dict__, "model_key": bytes(32)}))
    with pytest.raises(ModelLoadError, match="the model is encrypted: set VREYESAM_MODEL_KEY_FILE"):
        load_segmenter(encrypted_dir, options)


def test_swapped_ciphertexts_are_refused(encrypted_dir: Path, key: bytes, tmp_path: Path) -> None:
    """The role is authenticated: an encoder file renamed to the decoder does not decrypt."""
    blob = (encrypted_dir / "encoder.onnx.enc").read_bytes()
    with pytest.raises(crypto.ModelKeyError):
        crypto.decrypt(blob, key, "decoder")


def test_cli_key_handling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "keys" / "model.key"  # its folder is made
    assert main(["export", "--new-key", str(key_file)]) == 0
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert len(crypto.parse_key(key_file.read_text())) == 32
    assert main(["export", "--new-key", str(key_file)]) == 1
    assert main(["export", "--out", str(tmp_path / "m"), "--random-weights", "--encrypt"]) == 1
    assert "--encrypt needs --key-file FILE" in capsys.readouterr().err
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    assert main(["export", "--out", str(tmp_path / "m"), "--random-weights", "--encrypt", "--key-file", str(bad)]) == 1
    assert "model key must be 32 bytes as hex or base64" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
