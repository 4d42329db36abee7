"""`.ci/export_inputs.py`: what `make` re-exports the test model for (the exporter's own imports only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_exporter_and_what_it_imports_and_nothing_of_the_serving_edge() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "export_inputs.py")], capture_output=True, text=True, check=True
    )
    listed = set(done.stdout.split())
    assert {
        "export/builder.py",
        "runtime/surface.py",
        "runtime/model/segmenter.py",
        "runtime/model/__init__.py",
    } <= listed
    assert not {name for name in listed if name.startswith(("runtime/http/", "runtime/cluster/"))}
    assert "runtime/tools/predict.py" not in listed
    assert all((ROOT / name).is_file() for name in listed)
