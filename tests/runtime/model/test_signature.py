"""Signed model directories, verified at start by a real `vreyesam serve`: it serves a directory signed with
the configured key and refuses, in one line naming no path, with exit code 1 and before its port opens,
every directory that is not exactly what was signed. Without a key it serves as before and says so."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import signing_support
from tests.server_harness import ready_server, serve_to_exit
from vreyesam.runtime.manifest import read_manifest
from vreyesam.runtime.model.loader import LoadOptions, verified_files
from vreyesam.runtime.model.signature import SIGNATURE_NAME, SignatureError, Trust, verify_directory


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return signing_support.new_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def signed(model_dir: Path, keys: tuple[Path, Path], tmp_path: Path) -> Path:
    """A signed copy of the test model (hard links: tampering replaces files, the original stays)."""
    copy = signing_support.linked_copy(model_dir, tmp_path / "model")
    (copy / SIGNATURE_NAME).unlink(missing_ok=True)
    signing_support.sign(copy, keys[0])
    return copy


def _refusal(model: Path, public_key: Path, tmp_path: Path) -> str:
    done = serve_to_exit(model, "--allow-random-weights", env={"VREYESAM_MODEL_PUBLIC_KEY_FILE": str(public_key)})
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("vreyesam serve: error: model directory refused: "), line
    assert str(tmp_path) not in line and str(model) not in line and "Traceback" not in done.stderr
    return line.removeprefix("vreyesam serve: error: model directory refused: ")


@pytest.mark.parametrize("tampering", list(signing_support.TAMPERINGS))
def test_a_directory_that_is_not_what_was_signed_is_refused(
    tampering: str, signed: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    change, expected = signing_support.TAMPERINGS[tampering]
    change(signed)
    assert expected in _refusal(signed, keys[1], tmp_path)


def test_a_directory_signed_with_another_key_is_refused(signed: Path, tmp_path: Path) -> None:
    _, other_public = signing_support.new_key(tmp_path, "other")
    assert "another key" in _refusal(signed, other_public, tmp_path)


def test_without_a_key_a_rewritten_manifest_passes_which_is_why_keys_exist(signed: Path, model_dir: Path) -> None:
    signing_support.manifest_rewritten_to_match(signed)
    files = verified_files(signed, LoadOptions(allow_random_weights=True))  # every sha256 matches its manifest
    tampered, original = (
        files.manifest.artifacts["decoder"].sha256,
        read_manifest(model_dir).artifacts["decoder"].sha256,
    )
    assert tampered != original


def test_a_signed_directory_is_served_and_says_so(signed: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    env = {"VREYESAM_MODEL_PUBLIC_KEY_FILE": str(keys[1])}
    with ready_server(signed, tmp_path / "signed.log", "--allow-random-weights", env=env) as server:
        assert httpx.get(server.base_url + "/readyz", timeout=10).json()["signed"] is True
        assert "model directory signature verified" in server.log()
    with ready_server(signed, tmp_path / "unsigned.log", "--allow-random-weights") as server:
        assert httpx.get(server.base_url + "/readyz", timeout=10).json()["signed"] is False
        assert server.log().count("signature is not checked") == 1


def test_the_signature_may_live_elsewhere(signed: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    elsewhere = tmp_path / "signatures" / "vreyesam.sig"
    elsewhere.parent.mkdir()
    (signed / SIGNATURE_NAME).replace(elsewhere)
    assert verify_directory(signed, Trust(keys[1].read_bytes(), elsewhere))
    with pytest.raises(SignatureError, match="not signed"):
        verify_directory(signed, Trust(keys[1].read_bytes()))
