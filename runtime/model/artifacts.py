"""A model directory read once: every artifact's bytes, checked against the manifest, decrypted in memory.

Each file is read exactly once; its size and sha256 are checked on those bytes, and those same bytes (or
their decryption) are what the engines are built from, so nothing can change between the check and the
use. The plaintext of an encrypted graph exists only in memory.
"""

from __future__ import annotations

from pathlib import Path

from vreyesam.runtime.manifest import (
    GOLDEN,
    GRAPHS,
    Manifest,
    ManifestError,
    read_manifest,
    sha256_hex,
)
from vreyesam.runtime.model import crypto


class ModelLoadError(Exception):
    """The model directory cannot be served; the message is safe to print (no paths, no secrets)."""


class ModelFiles:
    """The verified contents of a model directory: its manifest, the golden sample, and the graphs' plaintext
    ONNX bytes, each handed over once (`take_graph`) so that ~155 MB are freed as soon as the engines hold
    them, whoever keeps this object."""

    def __init__(self, manifest: Manifest, graphs: dict[str, bytes], golden: bytes) -> None:
        self.manifest = manifest
        self.golden = golden
        self._graphs = dict(graphs)

    def take_graph(self, role: str) -> bytes:
        try:
            return self._graphs.pop(role)
        except KeyError:
            raise RuntimeError(f"the {role} graph was already handed over") from None


def _read_pinned(model_dir: Path, manifest: Manifest, role: str) -> bytes:
    artifact = manifest.artifacts[role]
    try:
        data = (model_dir / artifact.file).read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{role} artifact is missing") from None
    except OSError:
        raise ManifestError(f"{role} artifact is unreadable") from None
    if len(data) != artifact.bytes or sha256_hex(data) != artifact.sha256:
        raise ManifestError(f"{role} artifact does not match its sha256")
    return data


def _plaintext(manifest: Manifest, role: str, data: bytes, key: bytes | None) -> bytes:
    if not manifest.encrypted:
        return data
    if key is None:
        raise ModelLoadError("the model is encrypted: set VREYESAM_MODEL_KEY_FILE (or VREYESAM_MODEL_KEY)")
    try:
        return crypto.decrypt(data, key, role)
    except crypto.ModelKeyError as exc:
        raise ModelLoadError(str(exc)) from None


def read_model_files(model_dir: Path, *, allow_random_weights: bool, key: bytes | None = None) -> ModelFiles:
    """Manifest and artifacts, each read once and verified; ModelLoadError when it must not be served."""
    try:
        manifest = read_manifest(model_dir)
        if manifest.source.random_weights and not allow_random_weights:
            raise ModelLoadError(
                "model was exported with random weights (a demo); set VREYESAM_ALLOW_RANDOM_WEIGHTS=1 to serve it"
            )
        pinned = {role: _read_pinned(model_dir, manifest, role) for role in sorted(manifest.artifacts)}
    except ManifestError as exc:
        raise ModelLoadError(f"model directory failed verification: {exc}") from None
    graphs = {role: _plaintext(manifest, role, pinned[role], key) for role in GRAPHS}
    return ModelFiles(manifest=manifest, graphs=graphs, golden=pinned[GOLDEN])
