"""Signed model directories: the OpenSSF model-signing format (`model-signing` 1.x), verified here with
`cryptography` alone.

The signature (`model.sig` in the directory by default) is a Sigstore bundle holding a DSSE envelope over
an in-toto statement: the statement lists every file of the directory (relative path, sha256) except the
paths it says it ignores (the signature itself), and its subject's digest is the sha256 of those digests
in order. The envelope is signed with an ECDSA key (P-256, P-384 or P-521; the hash by curve) over DSSE's
pre-authentication encoding. The exporter signs with the `model-signing` library itself
(`vreyesam export --sign-key`); CI checks this verifier against that library both ways.

`verify_directory` refuses, with one line naming no path: a directory without a signature, a signature
made with another key or whose statement was edited, a file that is not signed (extra or renamed), a
signed file that is missing or whose bytes differ, and any symbolic link. It returns the manifest's bytes
from the same read that was checked, so what is parsed is what was signed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vreyesam.runtime.manifest import MANIFEST_NAME

SIGNATURE_NAME = "model.sig"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
_HASHES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512}
_CHUNK = 1 << 20


class SignatureError(Exception):
    """The model directory is not signed by the configured key; the message names no path."""


@dataclass(frozen=True)
class Trust:
    """What a model directory must be signed with: a public key (PEM), and where its signature is."""

    public_key_pem: bytes = field(repr=False)
    signature_file: Path | None = None  # default: model.sig in the model directory

    def signature_path(self, model_dir: Path) -> Path:
        return self.signature_file or model_dir / SIGNATURE_NAME

    @property
    def key_id(self) -> str:
        """The key's short id: the first 16 hex digits of the sha256 of its PEM (as the bundle's hint)."""
        return _key_hint(load_public_key(self.public_key_pem))[:16]


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise SignatureError("the model public key is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _HASHES:
        raise SignatureError("the model public key must be an ECDSA P-256, P-384 or P-521 key")
    return key


def _key_hint(key: ec.EllipticCurvePublicKey) -> str:
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE's pre-authentication encoding: what the signature is over."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def verified_statement(bundle: bytes, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """The in-toto statement of a bundle whose envelope `key` signed; SignatureError otherwise."""
    try:
        document = json.loads(bundle)
        envelope = document["dsseEnvelope"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
        payload_type = envelope["payloadType"]
        hint = document.get("verificationMaterial", {}).get("publicKey", {}).get("hint")
    except (ValueError, KeyError, IndexError, TypeError):
        raise SignatureError("the model signature is not a signature bundle") from None
    if payload_type != PAYLOAD_TYPE:
        raise SignatureError("the model signature is not over an in-toto statement")
    if hint and hint != _key_hint(key):
        raise SignatureError("the model was signed with another key than the configured one")
    try:
        key.verify(signature, pae(payload), ec.ECDSA(_HASHES[key.curve.name]()))
    except InvalidSignature:
        raise SignatureError("the model signature does not verify with the configured public key") from None
    try:
        statement = json.loads(payload)
    except ValueError:
        raise SignatureError("the signed statement is malformed") from None
    return statement


def signed_files(statement: dict[str, Any]) -> tuple[dict[str, str], tuple[str, ...]]:
    """(relative path -> sha256 hex, ignored paths) of a verified statement; SignatureError when it is not a
    model-signing statement over whole files."""
    try:
        if statement["_type"] != STATEMENT_TYPE or statement["predicateType"] != PREDICATE_TYPE:
            raise SignatureError("the signed statement is not a model signature")
        (subject,) = statement["subject"]
        predicate = statement["predicate"]
        serialization_args = predicate["serialization"]
        resources = predicate["resources"]
        if serialization_args["method"] != "files" or serialization_args["hash_type"] != "sha256":
            raise SignatureError("the model signature is not over whole files hashed with sha256")
        files = {str(item["name"]): str(item["digest"]).lower() for item in resources}
        if any(item["algorithm"] != "sha256" for item in resources) or len(files) != len(resources):
            raise SignatureError("the signed statement lists a file twice or with another hash")
        root = hashlib.sha256(b"".join(bytes.fromhex(item["digest"]) for item in resources)).hexdigest()
        if subject["digest"]["sha256"] != root:
            raise SignatureError("the signed statement is inconsistent")
        ignored = tuple(str(path) for path in serialization_args.get("ignore_paths", []))
    except (KeyError, TypeError, ValueError):
        raise SignatureError("the signed statement is malformed") from None
    return files, ignored


def _is_ignored(relative: str, ignored: tuple[str, ...]) -> bool:
    path = PurePosixPath(relative)
    return any(path == PurePosixPath(item) or PurePosixPath(item) in path.parents for item in ignored)


def _digest(path: Path) -> tuple[str, bytes | None]:
    """sha256 of a file, and its bytes when it is the manifest (parsed from exactly this read)."""
    hasher = hashlib.sha256()
    kept = bytearray() if path.name == MANIFEST_NAME else None
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
            if kept is not None:
                kept.extend(chunk)
    return hasher.hexdigest(), bytes(kept) if kept is not None else None


def verify_directory(model_dir: Path, trust: Trust) -> bytes:
    """Check `model_dir` against its signature; the manifest's bytes as read and checked."""
    key = load_public_key(trust.public_key_pem)
    try:
        bundle = trust.signature_path(model_dir).read_bytes()
    except FileNotFoundError:
        raise SignatureError("the model directory is not signed (no signature)") from None
    except OSError:
        raise SignatureError("the model signature cannot be read") from None
    expected, ignored = signed_files(verified_statement(bundle, key))
    found: dict[str, str] = {}
    manifest = None
    for folder, directories, names in os.walk(model_dir, followlinks=False):
        for name in [*directories, *names]:
            path = Path(folder) / name
            relative = path.relative_to(model_dir).as_posix()
            if path.is_symlink():
                raise SignatureError("the model directory holds a symbolic link")
            if name in names and not _is_ignored(relative, ignored):
                found[relative], data = _digest(path)
                if relative == MANIFEST_NAME:
                    manifest = data
    if set(found) - set(expected):
        raise SignatureError("the model directory holds a file that is not signed")
    if set(expected) - set(found):
        raise SignatureError("a signed file of the model directory is missing")
    if any(found[name] != digest for name, digest in expected.items()):
        raise SignatureError("a file of the model directory differs from what was signed")
    if manifest is None:
        raise SignatureError("the signed model directory has no manifest")
    return manifest
