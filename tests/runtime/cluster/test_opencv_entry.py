"""The cluster's entry points start only with OpenCV's image limits in effect (see runtime/media/opencv.py):
`vreyesam predict --ray` and a Ray Serve replica refuse, in one line, when cv2 was loaded before them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.server_harness import vreyesam_env

pytest.importorskip("ray")

REFUSAL = "OpenCV was loaded before its image limits were set"


def _python(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=vreyesam_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_predict_on_ray_refuses_before_joining_a_cluster(model_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"not needed: the command stops before reading it")
    script = "import cv2, sys; from vreyesam.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["predict", str(image), "--out", str(tmp_path / "out"), "--ray", "--model", str(model_dir)]
    done = _python(script, *args, "--allow-random-weights")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and REFUSAL in lines[0], done.stderr


def test_a_serve_replica_refuses_to_start(model_dir: Path) -> None:
    script = """
import cv2
from vreyesam.runtime.cluster.connect import StartupRefused
from vreyesam.runtime.cluster.deployment import Replica
try:
    Replica()
except StartupRefused as exc:
    print(exc)
"""
    done = _python(script, env={"VREYESAM_MODEL_DIR": str(model_dir), "VREYESAM_ALLOW_RANDOM_WEIGHTS": "1"})
    assert done.returncode == 0, done.stderr
    assert REFUSAL in done.stdout
