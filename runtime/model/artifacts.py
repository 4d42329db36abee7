"""A model directory read once: every artifact's bytes, checked against the manifest, decrypted in memory.

Each file is read exactly once; its size and sha256 are checked on those bytes, and those same bytes (or
their decryption) are what the engines are built from, so nothing can change between the check and the
use. The plaintext of an encrypted graph exists only in memory. With a public key configured (`Trust`),
the whole directory is first checked against its signature (`signature.verify_directory`), and the
manifest is parsed from the very bytes that were checked: a manifest rewritten to match altered files no
longer passes for the original.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vreyesam.runtime.manifest import (
    GOLDEN,
    GRAPH_ROLES,
    Manifest,
    ManifestError,
    parse_manifest,
    read_manifest,
    sha256_hex,
)
from vreyesam.runtime.model import crypto
from vreyesam.runtime.model.signature import SignatureError, Trust, verify_directory


class ModelLoadError(Exception):
    """The model directory cannot be served; the message is safe to print (no paths, no secrets)."""


class ModelFiles:
    """The verified contents of a model directory: its manifest, the small artifacts (golden sample,
    calibration images) and the graphs' plaintext ONNX bytes, each graph handed over once (`take_graph`)
    so that its bytes are freed as soon as an engine holds it, whoever keeps this object."""

    def __init__(self, manifest: Manifest, graphs: dict[str, bytes], small: dict[str, bytes]) -> None:
        self.manifest = manifest
        self._graphs = dict(graphs)
        self._small = dict(small)

    @property
    def golden(self) -> bytes:
        return self._small[GOLDEN]

    def small(self, role: str) -> bytes | None:
        """A small artifact's bytes (golden, calibration), None when it was not read."""
        return self._small.get(role)

    def take_graph(self, role: str) -> bytes:
        try:
            return self._graphs.pop(role)
        except KeyError:
            raise RuntimeError(f"the {role} graph was already handed over") from None


def _read_pinned(model_dir: Path, manifest: Manifest, role: str) -> bytes:
    artifact = manifest.artifacts.get(role)
    if artifact is None:
        raise ManifestError(f"manifest lists no {role} artifact")
    try:
        data = (model_dir / artifact.file).read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{role} artifact is missing") from None
    except OSError:
        raise ManifestError(f"{role} artifact is unreadable") from None
    if len(data) != artifact.bytes or sha256_hex(data) != artifact.sha256:
        raise ManifestError(f"{role} artifact does not match its sha256")
    return data


MISSING_KEY = "the model is encrypted: set VREYESAM_MODEL_KEY_FILE (or VREYESAM_MODEL_KEY)"


def require_key(manifest: Manifest, key: bytes | None) -> None:
    """ModelLoadError when the model is encrypted and no key was given."""
    if manifest.encrypted and key is None:
        raise ModelLoadError(MISSING_KEY)


def _plaintext(manifest: Manifest, role: str, data: bytes, key: bytes | None) -> bytes:
    if not manifest.encrypted:
        return data
    if key is None:
        raise ModelLoadError(MISSING_KEY)
    try:
        return crypto.decrypt(data, key, role)
    except crypto.ModelKeyError as exc:
        raise ModelLoadError(str(exc)) from None


@dataclass(frozen=True)
class ServableManifest:
    """A manifest that `servable_manifest` let through: its directory checked against `trust`'s key when one
    was configured, and the random-weights policy applied. Only this opens the artifacts
    (`read_model_files`), so no caller can read a model's files around those checks."""

    manifest: Manifest
    signed: bool


def servable_manifest(model_dir: Path, *, allow_random_weights: bool, trust: Trust | None) -> ServableManifest:
    """The manifest, if the directory has a valid one (signed by `trust`'s key: every caller says which key,
    or None for none) and the random-weights policy allows serving it."""
    try:
        manifest = parse_manifest(verify_directory(model_dir, trust)) if trust else read_manifest(model_dir)
    except SignatureError as exc:
        raise ModelLoadError(f"model directory refused: {exc}") from None
    except ManifestError as exc:
        raise ModelLoadError(f"model directory failed verification: {exc}") from None
    if manifest.source.random_weights and not allow_random_weights:
        raise ModelLoadError(
            "model was exported with random weights (a demo); set VREYESAM_ALLOW_RANDOM_WEIGHTS=1 to serve it"
        )
    return ServableManifest(manifest, signed=trust is not None)


def read_model_files(
    model_dir: Path, servable: ServableManifest, *, key: bytes | None = None, roles: Iterable[str] | None = None
) -> ModelFiles:
    """The artifacts `roles` (default: all) of a manifest `servable_manifest` let through, each read once and
    verified against it; ModelLoadError when the directory must not be served."""
    if not isinstance(servable, ServableManifest):
        raise TypeError("read_model_files takes the ServableManifest of servable_manifest, not a bare manifest")
    manifest = servable.manifest
    wanted = sorted(set(manifest.artifacts if roles is None else roles))
    try:
        pinned = {role: _read_pinned(model_dir, manifest, role) for role in wanted}
    except ManifestError as exc:
        raise ModelLoadError(f"model directory failed verification: {exc}") from None
    graphs = {role: _plaintext(manifest, role, data, key) for role, data in pinned.items() if role in GRAPH_ROLES}
    small = {role: data for role, data in pinned.items() if role not in GRAPH_ROLES}
    return ModelFiles(manifest, graphs, small)
