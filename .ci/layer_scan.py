"""Look for byte strings in every blob of an OCI image layout: what must be absent, and what must be present.

    python3 .ci/layer_scan.py OCI_DIR NEEDLES_JSON

NEEDLES_JSON is `{"absent": {label: hex}, "present": {label: hex}}`, each needle its bytes in hex. Layers
are read as stored (uncompressed when pushed with `--disable-compression`) and gunzipped when they are
gzip, in chunks that overlap by the longest needle, so a needle across a chunk boundary is still found.
Exit 0 when no "absent" needle is in any blob and every "present" one is in some blob (the proof that the
scan reads the layers at all); else 1, naming each failure. Standard library only: CI runs it with the
host's bare python3.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

CHUNK = 16 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"


def _open(blob: Path) -> IO[bytes]:
    with blob.open("rb") as handle:
        magic = handle.read(2)
    return gzip.open(blob, "rb") if magic == GZIP_MAGIC else blob.open("rb")


def chunks(blob: Path, overlap: int) -> Iterator[bytes]:
    """The blob's (decompressed) bytes in chunks, each starting with the last `overlap` bytes of the one before."""
    tail = b""
    with _open(blob) as handle:
        while block := handle.read(CHUNK):
            yield tail + block
            tail = (tail + block)[-overlap:] if overlap else b""


def scan(oci_dir: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """label -> the blobs (by digest file name) that hold that needle."""
    found: dict[str, list[str]] = {label: [] for label in needles}
    overlap = max((len(needle) for needle in needles.values()), default=1) - 1
    for blob in sorted((oci_dir / "blobs").rglob("*")):
        if not blob.is_file():
            continue
        pending = set(needles)
        for chunk in chunks(blob, overlap):
            for label in [label for label in pending if needles[label] in chunk]:
                found[label].append(blob.name)
                pending.discard(label)
            if not pending:
                break
    return found


def check(oci_dir: Path, spec: dict[str, dict[str, str]]) -> list[str]:
    """One line per failure: an absent needle that is there, a present one that is not."""
    absent = {label: bytes.fromhex(value) for label, value in spec.get("absent", {}).items()}
    present = {label: bytes.fromhex(value) for label, value in spec.get("present", {}).items()}
    if any(not needle for needle in (*absent.values(), *present.values())):
        return ["an empty needle matches everything"]
    found = scan(oci_dir, {**absent, **present})
    failures = [f"{label}: found in {', '.join(found[label][:3])}" for label in absent if found[label]]
    failures += [f"{label}: not found in any blob (is this the image?)" for label in present if not found[label]]
    return failures


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    oci_dir, spec_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    blobs = sum(1 for blob in (oci_dir / "blobs").rglob("*") if blob.is_file())
    failures = check(oci_dir, spec)
    for failure in failures:
        print(f"layer scan: {failure}", file=sys.stderr)
    if not failures:
        print(
            f"layer scan: {blobs} blobs, none holds any of {len(spec.get('absent', {}))} plaintext needles; "
            f"the {len(spec.get('present', {}))} expected ones are there"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
