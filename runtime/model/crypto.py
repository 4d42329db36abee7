"""Encryption at rest of the ONNX artifacts: AES-256-GCM, decrypted into memory only.

File layout: MAGIC, a 12-byte random nonce, then the ciphertext with its 16-byte tag. The artifact's
role ("encoder", "decoder") is authenticated as associated data, so encrypted files cannot be swapped.
The key is 32 bytes given as 64 hex characters or as base64, from a secret file or an environment
variable; it is never written to the manifest or a log. A wrong key fails authentication, not silently.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"VRSAM-AESGCM-1\n"
KEY_BYTES = 32
NONCE_BYTES = 12


class ModelKeyError(Exception):
    """The key is missing, malformed, or does not decrypt the model."""


def parse_key(text: str) -> bytes:
    value = text.strip()
    try:
        key = bytes.fromhex(value) if len(value) == 2 * KEY_BYTES else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise ModelKeyError("model key must be 32 bytes as hex or base64") from None
    if len(key) != KEY_BYTES:
        raise ModelKeyError("model key must be 32 bytes as hex or base64")
    return key


def new_key_text() -> str:
    return os.urandom(KEY_BYTES).hex()


def encrypt(plaintext: bytes, key: bytes, role: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, role.encode())


def decrypt(blob: bytes, key: bytes, role: str) -> bytes:
    if not blob.startswith(MAGIC):
        raise ModelKeyError(f"{role} artifact is not encrypted in the expected format")
    body = blob[len(MAGIC) :]
    nonce, ciphertext = body[:NONCE_BYTES], body[NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, role.encode())
    except InvalidTag:
        raise ModelKeyError("the model key does not decrypt the model") from None
