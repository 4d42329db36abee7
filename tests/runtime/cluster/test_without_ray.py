"""Nothing imports Ray unless a command was given --ray: proven at run time, where Ray is installed.

The static side is `confined` in pyproject's boundaries (tests/test_boundaries.py); here every runtime
module outside the cluster room is imported, and the plain commands' parsers are built, in a fresh process,
and `ray` must not be among the loaded modules.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import importlib, pkgutil, sys
import vreyesam.runtime as runtime
from vreyesam.cli import build_parser
for info in pkgutil.walk_packages(runtime.__path__, "vreyesam.runtime."):
    if not info.name.startswith("vreyesam.runtime.cluster"):
        importlib.import_module(info.name)
for command in ("serve", "predict"):
    parser, missing = build_parser([command])
    assert missing is None, missing
loaded = sorted(name for name in sys.modules if name == "ray" or name.startswith("ray."))
print(len(loaded))
"""


def test_the_plain_commands_and_rooms_never_load_ray() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "0"


BATCH_PATH = """
import sys
from vreyesam.cli import build_parser
import vreyesam.runtime.cluster.batch, vreyesam.runtime.cluster.connect, vreyesam.runtime.cluster.predict
parser, missing = build_parser(["predict", "--ray"])
assert missing is None, missing
print(sorted(name for name in sys.modules if name == "fastapi" or name.startswith("vreyesam.runtime.http")))
"""


def test_the_batch_path_loads_no_http_stack() -> None:
    """`vreyesam predict --ray` needs Ray and the model, not the API: neither FastAPI nor the http room."""
    pytest.importorskip("ray")
    command = [sys.executable, "-c", BATCH_PATH]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
