"""Where the weights come from: the Hugging Face Hub, a local file, or a seeded random initialisation.

Every source is identified in the manifest by an id that carries no local path and no token, and every
downloaded or local file can be pinned by sha256. Loading is `torch.load(weights_only=True)`: a pickle
that tries to build arbitrary Python objects is refused instead of executed.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from vreyesam.export.model import WeightsError
from vreyesam.runtime.manifest import sha256_hex
from vreyesam.runtime.settings import load_settings

DEFAULT_REPO = "devnagaich/VREyeSAM"
DEFAULT_FILE = "VREyeSAM_uncertainity_best.torch"
DEFAULT_SOURCE = f"hf://{DEFAULT_REPO}/{DEFAULT_FILE}"
# Secret files checked for a Hub token when HF_TOKEN is unset (BuildKit mounts secrets here).
TOKEN_FILES = (Path("/run/secrets/HF_TOKEN"), Path("/run/secrets/hf_token"))
_HF_SOURCE = re.compile(r"^hf://(?P<repo>[\w.-]+/[\w.-]+)/(?P<file>[^@]+?)(?:@(?P<revision>[\w./-]+))?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class WeightsFile:
    """A weights file on local disk plus the identifier the manifest records for it."""

    path: Path
    kind: str  # "huggingface" | "local"
    source_id: str  # hf://repo/file@revision, or local:<file name> — never a directory path
    sha256: str


def normalize_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    digest = value.strip().lower()
    if not _SHA256.match(digest):
        raise WeightsError("--sha256 must be 64 hexadecimal characters")
    return digest


def read_hf_token() -> str | None:
    """HF_TOKEN from the environment, else from a secret file (VREYESAM_HF_TOKEN_FILE or /run/secrets)."""
    token = os.environ.get("HF_TOKEN", "").strip()
    if token:
        return token
    configured = load_settings().hf_token_file
    for candidate in ([configured] if configured else []) + list(TOKEN_FILES):
        try:
            token = candidate.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if token:
            return token
    return None


def _download(source: str) -> tuple[Path, str]:
    match = _HF_SOURCE.match(source)
    if match is None:
        raise WeightsError("Hub sources look like hf://OWNER/REPO/FILE[@REVISION]")
    from huggingface_hub import hf_hub_download

    repo, filename, revision = match["repo"], match["file"], match["revision"]
    try:
        path = hf_hub_download(repo_id=repo, filename=filename, revision=revision, token=read_hf_token())
    except Exception as exc:
        raise WeightsError(f"could not download {source} from the Hugging Face Hub ({type(exc).__name__})") from None
    return Path(path), f"hf://{repo}/{filename}@{revision or 'main'}"


def fetch_weights(source: str, expected_sha256: str | None) -> WeightsFile:
    """Resolve a source to a local file and check its sha256 when one is pinned."""
    if source.startswith("hf://"):
        path, source_id = _download(source)
        kind = "huggingface"
    else:
        path = Path(source)
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path.name}")
        kind, source_id = "local", f"local:{path.name}"
    digest = sha256_hex(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise WeightsError(f"sha256 mismatch for {source_id}: expected {expected_sha256}, got {digest}")
    return WeightsFile(path=path, kind=kind, source_id=source_id, sha256=digest)


_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip container, or a bare (legacy) pickle


def load_state(path: Path) -> object:
    """torch.load with weights_only=True; unsafe or corrupt files become a one-line WeightsError."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if not head.startswith(_CHECKPOINT_MAGIC):
        raise WeightsError("weights file is not a readable PyTorch checkpoint")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler's protocol notes; refusals still raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(
            "weights file holds Python objects that safe loading refuses (weights_only=True); "
            "only plain state dicts of tensors are accepted"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, TypeError):
        raise WeightsError("weights file is not a readable PyTorch checkpoint") from None
