"""The one way this project starts a server process: tests, the benchmark, the load test and the image checks.

`start_server` runs `vreyesam serve` (from any interpreter, e.g. the torch-free serving venv) on a free
loopback port; `ServerProcess.start` runs any command that serves HTTP (the image checks run the built
image's own command in a chroot). Both give a `ServerProcess`: wait for a route's status, read its log and
RSS, stop it with SIGTERM. The server dies with the process that started it (PR_SET_PDEATHSIG), so a
killed test run leaves none behind.

Standard library only, so the image checks can run it with a bare `python3`:

    python3 tests/server_harness.py smoke --port PORT --log FILE -- COMMAND...
        start COMMAND, wait for /healthz and /readyz, POST a 160x120 PNG to /predict, check the mask PNG in
        the answer, stop it with SIGTERM; exit 0 when all of that worked, else 1 with the reason and log.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout_s: float = 5.0) -> int | None:
    """The status of GET `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def wait_for_status(url: str, status: int, timeout_s: float, poll_s: float = 0.05) -> float:
    """Seconds until GET `url` answered `status` (a server this process did not start); TimeoutError."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if http_status(url) == status:
            return time.monotonic() - started
        time.sleep(poll_s)
    raise TimeoutError(f"{url} did not answer {status} within {timeout_s:.0f} s")


def rss_of(pid: int, key: str = "VmRSS") -> int | None:
    """A process's resident memory in bytes from /proc (`VmHWM`: its peak); None when it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the starting process dies, so no server outlives a killed run."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    log_file: IO[bytes]

    @classmethod
    def start(
        cls, command: Sequence[str], base_url: str, log_path: Path, env: Mapping[str, str] | None = None
    ) -> ServerProcess:
        """Start `command` (its own process group, stdout and stderr to `log_path`) serving at `base_url`."""
        log_file = log_path.open("wb")  # closed by stop()
        process = subprocess.Popen(
            list(command),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(os.environ if env is None else env),
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        return cls(process=process, base_url=base_url, log_path=log_path, log_file=log_file)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, path: str, status: int, timeout_s: float = 120.0, poll_s: float = 0.05) -> float:
        """Seconds until GET `path` answered `status`; AssertionError if it exits or the time runs out."""
        started = time.monotonic()
        last = None
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}: {self.log()[-2000:]}")
            last = http_status(self.base_url + path)
            if last == status:
                return time.monotonic() - started
            time.sleep(poll_s)
        raise AssertionError(f"{path} never answered {status} (last: {last}); log: {self.log()[-2000:]}")

    def rss_bytes(self, key: str = "VmRSS") -> int | None:
        return rss_of(self.pid, key)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        """Signal the server's process group, wait for the exit code (SIGKILL after `timeout_s`)."""
        try:
            if self.process.poll() is None:
                os.killpg(self.process.pid, sig)
            try:
                return self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                return self.process.wait(timeout=10)
        finally:
            self.log_file.close()


# The shared test server's limits (tests/conftest.py `served`): small enough that the bad-input suite can
# cross them cheaply, large enough for every test image.
SHARED_SERVER_LIMITS = {
    "VREYESAM_MAX_BODY_BYTES": "2000000",
    "VREYESAM_MAX_WIDTH": "4096",
    "VREYESAM_MAX_HEIGHT": "4096",
    "VREYESAM_MAX_PIXELS": "4000000",
}


def vreyesam_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without VREYESAM_* settings, plus `env`."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("VREYESAM_")}
    # No metrics port unless a test asks for one: servers of one test session must not contend for 9464.
    return {**full, "PYTHONUNBUFFERED": "1", "VREYESAM_METRICS_PORT": "0", **(env or {})}


def start_server(
    model_dir: Path,
    log_path: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> ServerProcess:
    """`vreyesam serve --model DIR` from `python` on a free loopback port, with `args` and settings `env`."""
    port = free_port()
    command = [python, "-m", "vreyesam", "serve", "--model", str(model_dir), "--port", str(port), *args]
    return ServerProcess.start(command, f"http://127.0.0.1:{port}", log_path, vreyesam_env(env))


@contextmanager
def ready_server(
    model_dir: Path, log_path: Path, *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 180.0
) -> Iterator[ServerProcess]:
    """A started `vreyesam serve` once /readyz answers 200; on leaving, SIGTERM and a clean exit (code 0)."""
    proc = start_server(model_dir, log_path, *args, env=env)
    try:
        proc.wait_until("/readyz", 200, timeout_s)
        yield proc
    finally:
        code = proc.stop()
    assert code == 0, f"server exited with {code}: {proc.log()[-2000:]}"


def serve_to_exit(
    model_dir: Path, *args: str, env: Mapping[str, str] | None = None, port: int = 1, timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """`vreyesam serve` run to its exit, for start-up refusals. Port 1 cannot be bound: a refusal that must
    come before the port opens shows as its own message; pass a free port to let it get further."""
    return subprocess.run(
        [sys.executable, "-m", "vreyesam", "serve", "--model", str(model_dir), "--port", str(port), *args],
        env=vreyesam_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


# ------------------------------------------------------------------------------- the image smoke check


def smoke_png(width: int = 160, height: int = 120) -> bytes:
    """A small RGB PNG (a dark disc on a light background), encoded with the standard library."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            distance = ((x - width / 2) ** 2 + (y - height / 2) ** 2) ** 0.5
            value = 40 if distance < height / 5 else (110 if distance < height * 3 / 8 else 220)
            row += bytes((value, value, min(255, value + 10)))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def check_predict(base_url: str, width: int = 160, height: int = 120) -> str:
    """POST a PNG to /predict and check the answer's mask PNG has the image's size; a one-line report."""
    request = urllib.request.Request(
        base_url + "/predict", data=smoke_png(width, height), method="POST", headers={"Content-Type": "image/png"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    png = base64.b64decode(answer["outputs"]["mask"]["png_base64"])
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError("the mask is not a PNG")
    size = struct.unpack(">II", png[16:24])
    if size != (width, height):
        raise AssertionError(f"the mask is {size}, the image {width}x{height}")
    return f"/predict 200 with a {width}x{height} mask PNG from model {answer['model']['version']}"


def _smoke(args: argparse.Namespace) -> int:
    server = ServerProcess.start(args.command, f"http://127.0.0.1:{args.port}", args.log)
    try:
        healthy = server.wait_until("/healthz", 200, args.timeout)
        ready = server.wait_until("/readyz", 200, args.timeout)
        print(f"/healthz 200 after {healthy:.1f} s, /readyz 200 after {ready:.1f} s; {check_predict(server.base_url)}")
    except (AssertionError, OSError, KeyError, ValueError) as exc:
        print(f"smoke check failed: {exc}\n{server.log()[-3000:]}", file=sys.stderr)
        server.stop(timeout_s=20)
        return 1
    code = server.stop(timeout_s=30)
    print(f"stopped with SIGTERM: exit code {code}")
    return 0 if code == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="verb", required=True)
    smoke = commands.add_parser("smoke", help="start a server command and check that it segments an image")
    smoke.add_argument("--port", type=int, required=True, help="the port COMMAND serves on (loopback)")
    smoke.add_argument("--log", type=Path, required=True, help="where COMMAND's output goes")
    smoke.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for /healthz and /readyz")
    smoke.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return _smoke(args)


if __name__ == "__main__":
    sys.exit(main())
