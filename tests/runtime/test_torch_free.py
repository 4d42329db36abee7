"""The runtime runs with torch, torchvision, sam2, onnx and hydra impossible to import.

The static side of the same rule (no runtime module imports them, nor the exporter) is a contract in
pyproject.toml, checked by tests/test_boundaries.py; this test proves it at run time: every runtime module
imports, and a model loads and predicts, with those imports blocked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "sam2", "onnx", "hydra"}:
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Block())
import pkgutil, importlib, importlib.util
import vreyesam.runtime as runtime
names = [info.name for info in pkgutil.walk_packages(runtime.__path__, "vreyesam.runtime.")]
assert len(names) > 30, names
if importlib.util.find_spec("ray") is None:  # the cluster room needs the ray extra; everything else must not
    names = [name for name in names if not name.startswith("vreyesam.runtime.cluster")]
for name in names:
    importlib.import_module(name)
from pathlib import Path
from vreyesam.runtime.model.loader import LoadOptions, load_segmenter
from vreyesam.runtime.tools import synth
seg = load_segmenter(Path(sys.argv[1]), LoadOptions(device="cpu", allow_random_weights=True))
_, image, _ = synth.generate(seed=1, n=1, width=160, height=120)[0]
pred = seg.predict(image)
assert pred.binary.shape == (120, 160)
assert not any(m.split(".")[0] in {"torch", "sam2", "torchvision"} for m in sys.modules)
print("ok", seg.engines)
"""


def test_runtime_runs_with_torch_blocked(model_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, str(model_dir)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # The default precision: on a CPU with native bf16 the variant the export passed runs on OpenVINO.
    assert result.stdout.strip() in {"ok CPUExecutionProvider", "ok OpenVINO-CPU-bf16+CPUExecutionProvider"}
