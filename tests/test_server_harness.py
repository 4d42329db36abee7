"""The server harness's own command, as the container image checks run it: start, segment, stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.server_harness import free_port, vreyesam_env

HARNESS = Path(__file__).resolve().parent / "server_harness.py"


def test_smoke_checks_a_real_server_and_stops_it(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    serve = [sys.executable, "-m", "vreyesam", "serve", "--model", str(model_dir), "--port", str(port)]
    result = subprocess.run(
        [sys.executable, str(HARNESS), "smoke", "--port", str(port), "--log", str(tmp_path / "log"), "--", *serve],
        env=vreyesam_env({"VREYESAM_ALLOW_RANDOM_WEIGHTS": "1"}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "/predict 200 with a 160x120 mask PNG from model random-seed0" in lines[0], lines
    assert lines[-1] == "stopped with SIGTERM: exit code 0"


def test_smoke_fails_when_the_command_does_not_serve(tmp_path: Path) -> None:
    options = ["--port", str(free_port()), "--log", str(tmp_path / "log"), "--timeout", "20"]
    not_a_server = [sys.executable, "-c", "print('not a server')"]
    result = subprocess.run(
        [sys.executable, str(HARNESS), "smoke", *options, "--", *not_a_server],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "smoke check failed: server exited with 0" in result.stderr and "not a server" in result.stderr
