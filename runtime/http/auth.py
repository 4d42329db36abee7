"""Optional API keys for /predict, from a secret file, compared in constant time.

Health routes stay open (orchestrators probe them without credentials and they reveal nothing). A key
is sent as `Authorization: Bearer KEY` or `X-API-Key: KEY`; a missing or wrong key gets 401 with no
detail. Keys are compared as sha256 digests with hmac.compare_digest, against every configured key, so
neither the comparison nor the loop leaks which key or how much of it matched.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from vreyesam.runtime.settings import read_secret_lines


class ApiKeyError(Exception):
    """The key file is unusable; the message names no path and no key."""


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ApiKeyError("the API key file holds no key")
        if any(len(key) < 16 for key in keys):
            raise ApiKeyError("API keys must be at least 16 characters long")
        self._digests = [_digest(key) for key in keys]

    @classmethod
    def from_file(cls, path: Path) -> ApiKeys:
        try:
            return cls(read_secret_lines(path))
        except OSError:
            raise ApiKeyError("the API key file cannot be read") from None

    def allows(self, presented: str | None) -> bool:
        candidate = _digest(presented or "")
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched and presented is not None


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None
