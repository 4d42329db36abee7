"""Every way the weights can be wrong: one clear line, exit code 1, nothing written."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from vreyesam.cli import main
from vreyesam.export.model import build_random


def _export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["export", *args])
    captured = capsys.readouterr()
    return code, captured.err


def _assert_nothing_written(out_dir: Path) -> None:
    assert not out_dir.exists()
    assert [p.name for p in out_dir.parent.iterdir() if p.name.startswith(f".{out_dir.name}")] == []


@pytest.fixture(scope="module")
def good_state() -> dict[str, torch.Tensor]:
    return build_random(1).state_dict()


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("vreyesam export: error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_missing_local_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    code, err = _export(capsys, "--out", str(out), "--weights", str(tmp_path / "absent.torch"))
    assert code == 1
    assert _error_line(err) == "vreyesam export: error: weights file not found: absent.torch"
    _assert_nothing_written(out)


def test_sha256_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str], good_state) -> None:
    weights = tmp_path / "w.torch"
    torch.save(good_state, weights)
    out = tmp_path / "model"
    code, err = _export(capsys, "--out", str(out), "--weights", str(weights), "--sha256", "0" * 64)
    assert code == 1
    line = _error_line(err)
    assert line.startswith("vreyesam export: error: sha256 mismatch for local:w.torch: expected 000")
    assert str(tmp_path) not in err
    _assert_nothing_written(out)


def test_malformed_sha256(tmp_path: Path, capsys: pytest.CaptureFixture[str], good_state) -> None:
    weights = tmp_path / "w.torch"
    torch.save(good_state, weights)
    code, err = _export(capsys, "--out", str(tmp_path / "m"), "--weights", str(weights), "--sha256", "xyz")
    assert code == 1
    assert _error_line(err).endswith("--sha256 must be 64 hexadecimal characters")


def test_not_a_state_dict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "list.torch"
    torch.save([1, 2, 3], weights)
    out = tmp_path / "model"
    code, err = _export(capsys, "--out", str(out), "--weights", str(weights))
    assert code == 1
    assert _error_line(err).endswith("weights file is not a state dict of tensors")
    _assert_nothing_written(out)


def test_garbage_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "noise.torch"
    weights.write_bytes(b"\x00not a checkpoint" * 100)
    code, err = _export(capsys, "--out", str(tmp_path / "model"), "--weights", str(weights))
    assert code == 1
    assert _error_line(err).endswith("weights file is not a readable PyTorch checkpoint")


class _RunsCode:
    """A pickle payload that would create a file if it were ever unpickled unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def test_pickle_that_runs_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.torch"
    with weights.open("wb") as handle:
        pickle.dump({"model": _RunsCode(marker)}, handle)
    out = tmp_path / "model"
    code, err = _export(capsys, "--out", str(out), "--weights", str(weights))
    assert code == 1
    assert "safe loading refuses" in _error_line(err)
    assert not marker.exists()
    _assert_nothing_written(out)


def test_missing_and_unexpected_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str], good_state) -> None:
    state = dict(good_state)
    for key in list(state)[:3]:
        del state[key]
    state["extra.weight"] = torch.zeros(1)
    weights = tmp_path / "keys.torch"
    torch.save(state, weights)
    out = tmp_path / "model"
    code, err = _export(capsys, "--out", str(out), "--weights", str(weights))
    assert code == 1
    line = _error_line(err)
    assert "3 missing and 1 unexpected keys" in line
    assert "first unexpected: extra.weight" in line
    _assert_nothing_written(out)


def test_wrong_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str], good_state) -> None:
    state = dict(good_state)
    key = "sam_mask_decoder.iou_token.weight"
    state[key] = torch.zeros(2, 7)
    weights = tmp_path / "shapes.torch"
    torch.save(state, weights)
    code, err = _export(capsys, "--out", str(tmp_path / "model"), "--weights", str(weights))
    assert code == 1
    assert f"1 tensors have the wrong shape (first: {key} (2, 7) != (1, 256))" in _error_line(err)


def test_meta_checkpoint_layout_is_unwrapped(good_state) -> None:
    """Meta's own checkpoints nest the state dict under "model"; both layouts load."""
    from vreyesam.export.model import build_sam2_hiera_s, load_state_dict_strict

    model = build_sam2_hiera_s()
    load_state_dict_strict(model, {"model": good_state})
    assert torch.equal(model.state_dict()["no_mem_embed"], good_state["no_mem_embed"])


def test_hub_failure_never_shows_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_CANARYtokenValue123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub is reachable here; fail at once, not on a timeout
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out = tmp_path / "model"
    code, err = _export(capsys, "--out", str(out), "--weights", "hf://someone/somerepo/w.torch@v1")
    assert code == 1
    assert _error_line(err).startswith(
        "vreyesam export: error: could not download hf://someone/somerepo/w.torch@v1 from the Hugging Face Hub"
    )
    assert "CANARY" not in err
    _assert_nothing_written(out)


def test_existing_directory_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, err = _export(capsys, "--out", str(out), "--random-weights")
    assert code == 1
    assert _error_line(err).endswith("model already exists; pass --force to replace it")
    assert (out / "keep.txt").read_text() == "x"


def test_token_from_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vreyesam.export.weights import read_hf_token

    secret = tmp_path / "token"
    secret.write_text("hf_from_file\n")
    monkeypatch.setenv("VREYESAM_HF_TOKEN_FILE", str(secret))
    assert read_hf_token() == "hf_from_file"
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert read_hf_token() == "hf_from_env"
