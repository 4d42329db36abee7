"""Model directories derived from the test model for tests that need other procedure defaults.

`with_procedure_defaults` is what an export with other defaults would write: the manifest's `procedure`
changed and the golden sample's final mask recomputed at the new threshold (from its stored torch logits and
scores, by the numpy reference procedure), every sha256 pinned again. Graphs are linked, not copied.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from tests import numpy_procedure
from vreyesam.runtime.manifest import GOLDEN, MANIFEST_NAME, sha256_hex
from vreyesam.runtime.model.golden import load_golden, save_golden
from vreyesam.runtime.model.preprocess import fit_image


def with_procedure_defaults(source: Path, out: Path, *, points: int, threshold: float, seed: int) -> Path:
    out.mkdir(parents=True)
    for path in source.iterdir():
        if path.suffix == ".onnx":
            os.link(path, out / path.name)
        elif path.name != MANIFEST_NAME:
            shutil.copyfile(path, out / path.name)
    manifest = json.loads((source / MANIFEST_NAME).read_text())
    manifest["procedure"].update(points=points, threshold=threshold, seed=seed)
    golden_file = out / manifest["artifacts"][GOLDEN]["file"]
    sample = load_golden(golden_file.read_bytes())
    fitted_hw = fit_image(sample.image, manifest["preprocessing"]["fit_size"]).shape[:2]
    binary = numpy_procedure.maps(sample.low_res_logits, sample.scores, fitted_hw, sample.image.shape[:2], threshold)[
        "binary"
    ]
    golden_file.unlink()
    save_golden(golden_file, dataclasses.replace(sample, binary=binary))
    manifest["artifacts"][GOLDEN].update(sha256=sha256_hex(golden_file), bytes=golden_file.stat().st_size)
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return out
