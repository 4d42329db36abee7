"""Signing a model directory: the OpenSSF model-signing library, with an ECDSA key given as a secret file.

`sign_directory` writes the signature (a Sigstore bundle over an in-toto statement listing every file's
sha256) to `model.sig` in the directory, itself left out of what it signs, so one folder (or one image
layer) carries both. The server checks it with `runtime/model/signature.py` against the public key its
operator configured. Keys are ECDSA P-256 (what the library supports besides P-384/P-521; Ed25519 and RSA
it refuses). Keyless Sigstore signing (OIDC identity, transparency log) is the library's other mode, for
releases built in CI with an identity: `python -m model_signing sign sigstore DIR`; the server then
needs the library's verifier, not this project's key check.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vreyesam.runtime.surface import SIGNATURE_NAME


class SigningError(Exception):
    """The directory cannot be signed with this key; the message names no key material."""


def sign_directory(model_dir: Path, private_key: Path, signature: Path | None = None) -> Path:
    """Sign every file of `model_dir` (but the signature) with the PEM private key; returns the signature."""
    from model_signing import hashing, signing

    target = signature or model_dir / SIGNATURE_NAME
    ignored = [target.relative_to(model_dir)] if target.parent == model_dir else []
    config = signing.Config().use_elliptic_key_signer(private_key=private_key)
    config.set_hashing_config(hashing.Config().set_ignored_paths(paths=ignored, ignore_git_paths=True))
    try:
        config.sign(model_dir, target)
    except ValueError as exc:  # the library's "unsupported key" and unreadable-key errors
        raise SigningError(f"the signing key cannot be used: {exc}") from None
    return target


def check_private_key(path: Path) -> None:
    """SigningError unless `path` holds an ECDSA private key the library signs with (P-256, P-384, P-521)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError:
        raise SigningError("the signing key file cannot be read") from None
    except (ValueError, TypeError):
        raise SigningError("the signing key file is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
        raise SigningError("the signing key must be an ECDSA P-256, P-384 or P-521 key")


def new_key_pair(private_path: Path, public_path: Path) -> None:
    """A new ECDSA P-256 key pair: the private key (PKCS#8 PEM, 0600, never overwritten) and its public key."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for path in (private_path, public_path):
        if path.exists():
            raise SigningError(f"{path.name} already exists")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
