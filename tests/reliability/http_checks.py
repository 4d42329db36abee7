"""Helpers shared by the reliability tests: raw HTTP over a socket, and the checks every error body must pass."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterable, Mapping

# What an error body must never contain: traceback text, file paths, library names or versions.
LEAK = re.compile(
    r"Traceback|File \"|site-packages|dist-packages|\.py\b|\.so\b"
    r"|/(?:tmp|work|usr|home|opt|root|var|etc|proc|srv|app|models?)\b"
    r"|(?:/[\w.-]+){2,}"  # two path segments in a row: /a/b (media types like image/png have one)
    r"|\b\d+\.\d+\.\d+"  # a version number
    r"|uvicorn|starlette|fastapi|pydantic|python|pillow|\bPIL\b|opencv|cv2|onnx|numpy|libpng|libjpeg",
    re.IGNORECASE,
)


def leaks(text: str) -> list[str]:
    return [match.group(0) for match in LEAK.finditer(text)]


def assert_clean_error(status: int, headers: Mapping[str, str], body: bytes, expected_status: int, code: str) -> None:
    """The error answer is `expected_status` with JSON {"error": {"code", "message"}} and leaks nothing."""
    text = body.decode("utf-8", errors="replace")
    assert status == expected_status, f"expected {expected_status} {code}, got {status}: {text[:300]}"
    lowered = {key.lower(): value for key, value in headers.items()}
    assert "server" not in lowered, lowered["server"]
    assert lowered.get("content-type", "").startswith("application/json"), lowered.get("content-type")
    answer = json.loads(text)
    assert set(answer) == {"error"}, answer
    assert set(answer["error"]) == {"code", "message"}, answer
    assert answer["error"]["code"] == code, answer
    message = answer["error"]["message"]
    assert isinstance(message, str) and 0 < len(message) <= 200, answer
    assert not leaks(text), (leaks(text), text)


def read_response(sock: socket.socket, timeout_s: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length body from `sock`."""
    sock.settimeout(timeout_s)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full response header: {buffer[:200]!r}")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def raw_exchange(
    host: str, port: int, head: bytes, body_parts: Iterable[bytes] = (), timeout_s: float = 60.0
) -> tuple[int, dict[str, str], bytes]:
    """Send a request head and body parts exactly as given, then read the answer."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        return read_response(sock, timeout_s)
