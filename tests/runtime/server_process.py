"""A real `vreyesam serve` process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    base_url: str
    log_path: Path
    log_file: IO[str]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, path: str, status: int, timeout_s: float = 120.0) -> httpx.Response:
        deadline = time.monotonic() + timeout_s
        last: httpx.Response | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}: {self.log()[-2000:]}")
            try:
                last = httpx.get(self.base_url + path, timeout=5)
                if last.status_code == status:
                    return last
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{path} never answered {status} (last: {last}); log: {self.log()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self.log_file.close()


def start_server(model_dir: Path, log_path: Path, *extra_args: str, env: dict[str, str] | None = None) -> ServerProcess:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VREYESAM_")}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    log_file = log_path.open("w")  # closed by stop()
    process = subprocess.Popen(
        [sys.executable, "-m", "vreyesam", "serve", "--model", str(model_dir), "--port", str(port), *extra_args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=full_env,
        text=True,
    )
    return ServerProcess(process=process, base_url=f"http://127.0.0.1:{port}", log_path=log_path, log_file=log_file)


def serve_once(model_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`vreyesam serve` on port 1, which it cannot bind: for start-up refusals, which must come first."""
    return subprocess.run(
        [sys.executable, "-m", "vreyesam", "serve", "--model", str(model_dir), "--port", "1", *args],
        env={"PATH": "/usr/bin:/bin", "VREYESAM_ALLOW_RANDOM_WEIGHTS": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
