"""Signing, cross-checked with the OpenSSF `model-signing` library both ways: what the library signs, this
project's verifier (runtime/model/signature.py) accepts; what the tests' signer writes, the library accepts;
and every tampered directory, both refuse. `vreyesam export --sign-key` signs with the library."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from tests import signing_support
from vreyesam.cli import main
from vreyesam.export.signing import sign_directory
from vreyesam.runtime.model.signature import SIGNATURE_NAME, SignatureError, Trust, verify_directory

verifying = pytest.importorskip("model_signing.verifying")


def library_accepts(model: Path, public_key: Path, signature: Path | None = None) -> bool:
    try:
        verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(
            model, signature or model / SIGNATURE_NAME
        )
    except (ValueError, InvalidSignature, OSError):  # what the library raises for each refusal
        return False
    return True


def ours_accept(model: Path, public_key: Path) -> bool:
    try:
        verify_directory(model, Trust(public_key.read_bytes()))
    except SignatureError:
        return False
    return True


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return signing_support.new_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture(params=["library", "tests' signer"])
def signed(request: pytest.FixtureRequest, model_dir: Path, keys: tuple[Path, Path], tmp_path: Path) -> Path:
    copy = signing_support.linked_copy(model_dir, tmp_path / "model")
    (copy / SIGNATURE_NAME).unlink(missing_ok=True)
    if request.param == "library":
        sign_directory(copy, keys[0])
    else:
        signing_support.sign(copy, keys[0])
    return copy


def test_a_signed_directory_verifies_with_both(signed: Path, keys: tuple[Path, Path]) -> None:
    assert library_accepts(signed, keys[1]) and ours_accept(signed, keys[1])


@pytest.mark.parametrize("tampering", list(signing_support.TAMPERINGS))
def test_both_refuse_every_tampering(tampering: str, signed: Path, keys: tuple[Path, Path]) -> None:
    signing_support.TAMPERINGS[tampering][0](signed)
    assert not library_accepts(signed, keys[1])
    assert not ours_accept(signed, keys[1])


def test_both_refuse_another_key(signed: Path, tmp_path: Path) -> None:
    _, other = signing_support.new_key(tmp_path, "other")
    assert not library_accepts(signed, other) and not ours_accept(signed, other)


def test_the_export_signs_its_model_with_the_library(model_dir: Path) -> None:
    """The test model of `make test` is exported with --sign-key (its public key beside it); a model exported
    otherwise (pytest without make) has no signature, and this is skipped."""
    public = os.environ.get("VREYESAM_TEST_MODEL_PUBLIC_KEY")
    if not public or not (model_dir / SIGNATURE_NAME).is_file():
        pytest.skip("the test model was not exported with --sign-key")
    assert library_accepts(model_dir, Path(public)) and ours_accept(model_dir, Path(public))


def test_new_signing_keys_and_a_key_that_cannot_sign(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Into a folder that does not exist yet, as `make test` does in a fresh clone (no build-out/).
    prefix = tmp_path / "not-yet" / "release"
    assert main(["export", "--new-signing-key", str(prefix)]) == 0
    private = prefix.with_name("release.key")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and prefix.with_name("release.pub").is_file()
    assert main(["export", "--new-signing-key", str(prefix)]) == 1  # never overwritten
    not_a_key = tmp_path / "rsa.key"
    not_a_key.write_text("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n")
    capsys.readouterr()
    # Refused before minutes of exporting: the key is checked first.
    assert main(["export", "--out", str(tmp_path / "m"), "--random-weights", "--sign-key", str(not_a_key)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "signing key" in line and not (tmp_path / "m").exists()
