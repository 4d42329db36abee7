"""Faults: a broken or forbidden model directory, and SIGTERM during a request, against real server processes.

Each broken model must stop `vreyesam serve` with a non-zero exit and a short, generic message on stderr
(no traceback, no path). Integrity and policy checks (missing, truncated or tampered artifact, random
weights without permission, no model directory) fail before the port opens; a golden self-test failure
happens after start-up, in the background loader, and stops the server with exit code 1.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from tests.reliability import corpus
from tests.reliability.http_checks import read_response
from tests.server_harness import ServerProcess, free_port, serve_to_exit, start_server

QUICK_EXIT_S = 60  # verification hashes ~155 MB: a few seconds, more on a busy machine
PATH_LIKE = re.compile(r"(?:/[\w.-]+){2,}|/tmp\b|/work\b|site-packages|\.py\b")


def _serve(model_dir: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = QUICK_EXIT_S):
    started = time.monotonic()
    result = serve_to_exit(model_dir, *args, env=env, port=free_port(), timeout_s=timeout_s)
    return result, time.monotonic() - started


def _assert_generic(stderr: str, model_dir: Path) -> None:
    assert "Traceback" not in stderr and 'File "' not in stderr, stderr
    assert str(model_dir) not in stderr and model_dir.name not in stderr, stderr
    assert not PATH_LIKE.findall(stderr), (PATH_LIKE.findall(stderr), stderr)


def _assert_quick_refusal(result: subprocess.CompletedProcess[str], model_dir: Path, expected: str) -> None:
    """Exit 1 before the port opens, with one line `vreyesam serve: error: ...` on stderr."""
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("vreyesam serve: error: "), lines
    assert expected in lines[0], lines
    assert len(lines[0]) <= 200, lines
    assert result.stdout == ""
    _assert_generic(result.stderr, model_dir)


def _copy_model(source: Path, target: Path, skip: tuple[str, ...] = ()) -> Path:
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name not in skip:
            shutil.copyfile(item, target / item.name)  # real copies: the shared model is never written to
    return target


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param("missing", "model directory failed verification: encoder artifact is missing", id="missing"),
        pytest.param(
            "truncated",
            "model directory failed verification: encoder artifact does not match its sha256",
            id="truncated",
        ),
        pytest.param(
            "byte-flipped",
            "model directory failed verification: encoder artifact does not match its sha256",
            id="byte-flipped",
        ),
    ],
)
def test_damaged_encoder_refuses_to_start(model_dir: Path, tmp_path: Path, fault: str, expected: str) -> None:
    copy = _copy_model(model_dir, tmp_path / "model-under-test", skip=("encoder.onnx",) if fault == "missing" else ())
    encoder = copy / "encoder.onnx"
    try:
        if fault == "truncated":
            with encoder.open("r+b") as handle:
                handle.truncate(encoder.stat().st_size // 2)
        elif fault == "byte-flipped":
            with encoder.open("r+b") as handle:  # same size, one byte different, deep in the weights
                handle.seek(encoder.stat().st_size * 2 // 3)
                byte = handle.read(1)
                handle.seek(-1, io.SEEK_CUR)
                handle.write(bytes([byte[0] ^ 0x01]))
        result, elapsed = _serve(copy, "--allow-random-weights")
        _assert_quick_refusal(result, copy, expected)
        assert elapsed < QUICK_EXIT_S
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_golden_mismatch_stops_the_server_after_start(model_dir: Path, tmp_path: Path) -> None:
    """Golden expectation corrupted and re-pinned in the manifest: the sha256 check passes, the self-test fails."""
    copy = _copy_model(model_dir, tmp_path / "model-under-test")
    try:
        golden_path = copy / "golden.npz"
        with np.load(golden_path) as archive:
            arrays = {key: archive[key] for key in archive.files}
        arrays["low_res_logits"] = -arrays["low_res_logits"] + 10.0  # far outside any tolerance
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        golden_path.write_bytes(buffer.getvalue())
        manifest_path = copy / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["artifacts"]["golden"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
        manifest["artifacts"]["golden"]["bytes"] = len(buffer.getvalue())
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

        result, _ = _serve(copy, "--allow-random-weights", timeout_s=300)
        assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
        lines = result.stderr.strip().splitlines()
        assert 1 <= len(lines) <= 20, result.stderr[-3000:]
        failure = [line for line in lines if "model failed to load" in line]
        assert failure and "golden self-test" in failure[0], lines
        assert "Uvicorn running" in result.stderr  # it did open the port: this check runs after start-up
        _assert_generic(result.stderr, copy)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_random_weights_need_permission(model_dir: Path) -> None:
    result, _ = _serve(model_dir)  # no --allow-random-weights, no VREYESAM_ALLOW_RANDOM_WEIGHTS
    _assert_quick_refusal(result, model_dir, "VREYESAM_ALLOW_RANDOM_WEIGHTS=1")


def test_missing_model_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    result, _ = _serve(missing, "--allow-random-weights")
    _assert_quick_refusal(result, missing, "model directory not found")


def _messages(proc: ServerProcess) -> list[str]:
    """The messages of the server's log records so far (it logs JSON lines)."""
    return [json.loads(line)["message"] for line in proc.log().splitlines() if line.startswith("{")]


def _wait_for_message(proc: ServerProcess, message: str, timeout_s: float = 60.0) -> None:
    """Until the server has logged `message`; AssertionError if it exits first or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while message not in _messages(proc):
        assert proc.process.poll() is None, f"the server exited before logging {message!r}: {proc.log()[-2000:]}"
        assert time.monotonic() < deadline, f"no {message!r} in the log: {proc.log()[-2000:]}"
        time.sleep(0.02)  # a poll interval


def _read_interim_head(sock: socket.socket) -> bytes:
    """The head of a 1xx answer (which has no body), read without reading past it."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        assert chunk, f"the connection closed after {head!r}"
        head += chunk
    return head


def test_sigterm_lets_the_request_in_flight_finish(model_dir: Path, tmp_path: Path) -> None:
    """SIGTERM while a request is inside the app: the port closes at once, the request is answered, exit 0.

    The client holds its request in flight itself: it asks `Expect: 100-continue` and sends the body only
    after the signal. The server's `100 Continue` proves the request is inside the app (uvicorn sends it
    when the route starts reading the body), and uvicorn's "Waiting for connections to close" proves the
    shutdown has begun, its listening socket closed, with that request still open.
    """
    shutdown_timeout_s = 30
    proc = start_server(
        model_dir,
        tmp_path / "server.log",
        "--allow-random-weights",
        env={"VREYESAM_SHUTDOWN_TIMEOUT_S": str(shutdown_timeout_s)},
    )
    try:
        proc.wait_until("/readyz", 200, timeout_s=180)
        image = corpus.png(64, 48)
        parts = urlsplit(proc.base_url)
        head = (
            "POST /predict?points=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(image)}\r\nExpect: 100-continue\r\n\r\n"
        )
        with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
            sock.sendall(head.encode())
            interim = _read_interim_head(sock)
            assert interim.startswith(b"HTTP/1.1 100 "), interim
            proc.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            _wait_for_message(proc, "Waiting for connections to close. (CTRL+C to force quit)")
            with pytest.raises(httpx.TransportError):  # no new request gets in
                httpx.get(proc.base_url + "/healthz", timeout=5)
            assert proc.process.poll() is None  # still there for the request in flight
            sock.sendall(image)
            status, _, body = read_response(sock)
            assert status == 200, body[:300]
            answer = json.loads(body)
            assert answer["parameters"]["points"] == 1 and answer["image"] == {"width": 64, "height": 48}
            assert sock.recv(1) == b""  # then the server closes the connection: no further request on it

        code = proc.process.wait(timeout=shutdown_timeout_s + 10)
        assert code == 0, proc.log()[-2000:]
        assert time.monotonic() - signalled < shutdown_timeout_s
        assert "Traceback" not in proc.log()
    finally:
        proc.stop(signal.SIGKILL, timeout_s=10)


def test_sigterm_while_the_model_loads_exits_cleanly(model_dir: Path, tmp_path: Path) -> None:
    """The port is open before the model is loaded: a SIGTERM then waits for the loader, exits 0, no abort.

    The signal is sent to a frozen process (SIGSTOP as soon as its port answers, SIGCONT after the SIGTERM):
    its log, final while it is frozen, shows that the model was not yet loaded when the signal came. A start
    whose model was loaded before the freeze proves nothing and is started again.
    """
    for attempt in range(3):
        proc = start_server(model_dir, tmp_path / f"server-{attempt}.log", "--allow-random-weights")
        try:
            proc.wait_until("/healthz", 200, timeout_s=60, poll_s=0.02)
            proc.process.send_signal(signal.SIGSTOP)
            loaded = any(message.startswith("model ready") for message in _messages(proc))
            proc.process.send_signal(signal.SIGTERM)
            proc.process.send_signal(signal.SIGCONT)
            code = proc.process.wait(timeout=60)
            if loaded:
                continue
            assert code == 0, proc.log()[-2000:]
            assert "terminate called" not in proc.log() and "Traceback" not in proc.log()
            messages = _messages(proc)
            ready = [index for index, message in enumerate(messages) if message.startswith("model ready")]
            assert "Shutting down" in messages and ready, messages  # the loader finished, then the exit
            return
        finally:
            proc.stop(signal.SIGKILL, timeout_s=10)
    raise AssertionError("in 3 starts, the model was loaded before the port answered")
