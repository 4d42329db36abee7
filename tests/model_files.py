"""A test model directory's files, opened the way the server opens them (no signing key: the tests' own)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vreyesam.runtime.model.artifacts import ModelFiles, read_model_files, servable_manifest


def open_model_files(
    model_dir: Path, *, roles: Iterable[str] | None = None, key: bytes | None = None, allow_random_weights: bool = True
) -> ModelFiles:
    servable = servable_manifest(model_dir, allow_random_weights=allow_random_weights, trust=None)
    return read_model_files(model_dir, servable, key=key, roles=roles)
