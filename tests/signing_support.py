"""A signer of the model-signing format for the tests, over `cryptography` alone, and ways to tamper with a
signed model directory.

The serving stage has no `model-signing` library (the builder has it): its tests sign copies of the test
model with `sign`, which writes what the library writes (tests/export/test_signing.py checks that the
library verifies these signatures, and that this project's verifier accepts the library's).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vreyesam.runtime.manifest import MANIFEST_NAME, sha256_hex
from vreyesam.runtime.model.signature import PAYLOAD_TYPE, PREDICATE_TYPE, SIGNATURE_NAME, STATEMENT_TYPE, pae

IGNORED = [".git", ".gitattributes", ".github", ".gitignore", SIGNATURE_NAME]


def new_key(folder: Path, name: str = "model") -> tuple[Path, Path]:
    """(private key PEM path, public key PEM path), ECDSA P-256."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / f"{name}.key"
    public = folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def statement(model_dir: Path) -> dict:
    resources = []
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        name = path.relative_to(model_dir).as_posix()
        if name not in IGNORED:
            resources.append(
                {"name": name, "algorithm": "sha256", "digest": hashlib.sha256(path.read_bytes()).hexdigest()}
            )
    root = hashlib.sha256(b"".join(bytes.fromhex(item["digest"]) for item in resources)).hexdigest()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_dir.name, "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": IGNORED,
            },
            "resources": resources,
        },
    }


def bundle(payload: bytes, private_key: Path) -> bytes:
    key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(pae(payload), ec.ECDSA(hashes.SHA256()))
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return json.dumps(
        {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"publicKey": {"hint": hashlib.sha256(public).hexdigest()}, "tlogEntries": []},
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": PAYLOAD_TYPE,
                "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
            },
        }
    ).encode()


def sign(model_dir: Path, private_key: Path) -> Path:
    """Sign every file of `model_dir` but model.sig; returns the signature's path."""
    payload = json.dumps(statement(model_dir)).encode()
    target = model_dir / SIGNATURE_NAME
    target.write_bytes(bundle(payload, private_key))
    return target


def linked_copy(source: Path, target: Path) -> Path:
    """A copy of a model directory whose large files are hard links (tampering replaces, never edits them)."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file():
            os.link(path, target / path.name)
    return target


def replace_file(path: Path, data: bytes) -> None:
    """New bytes under the name (a new inode: the hard-linked original is untouched)."""
    path.unlink()
    path.write_bytes(data)


def edit_statement(signature: Path) -> None:
    """The signed statement changed (a file's digest) with the signature left as it was."""
    document = json.loads(signature.read_bytes())
    payload = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
    payload["predicate"]["resources"][0]["digest"] = "0" * 64
    document["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    signature.write_text(json.dumps(document))


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _modified(model: Path) -> None:
    data = (model / "golden.npz").read_bytes()
    replace_file(model / "golden.npz", data[:-1] + bytes([data[-1] ^ 1]))


def manifest_rewritten_to_match(model: Path) -> None:
    """The decoder replaced and the manifest rewritten to pin the new bytes: what the sha256 check of the
    manifest alone cannot tell from the original."""
    manifest = json.loads((model / MANIFEST_NAME).read_text())
    decoder = model / manifest["artifacts"]["decoder"]["file"]
    data = bytearray(decoder.read_bytes())
    data[-1] ^= 1
    replace_file(decoder, bytes(data))
    manifest["artifacts"]["decoder"].update(sha256=sha256_hex(bytes(data)), bytes=len(data))
    replace_file(model / MANIFEST_NAME, json.dumps(manifest, indent=2).encode())


def _symlinked(model: Path) -> None:
    target = model / "calibration.npz"
    moved = model.parent / "calibration-elsewhere.npz"
    target.replace(moved)
    target.symlink_to(moved)


TAMPERINGS: dict[str, tuple[Callable[[Path], None], str]] = {
    "unsigned": (lambda m: (m / SIGNATURE_NAME).unlink(), "not signed"),
    "edited statement": (lambda m: edit_statement(m / SIGNATURE_NAME), "does not verify"),
    "modified file": (_modified, "differs from what was signed"),
    "missing file": (lambda m: (m / "calibration.npz").unlink(), "is missing"),
    "extra file": (lambda m: (m / "notes.txt").write_text("added"), "not signed"),
    "renamed file": (lambda m: (m / "calibration.npz").replace(m / "calibration-2.npz"), "not signed"),
    "symbolic link": (_symlinked, "symbolic link"),
    "manifest rewritten to match": (manifest_rewritten_to_match, "differs from what was signed"),
}
