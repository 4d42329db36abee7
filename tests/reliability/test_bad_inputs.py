"""A corpus of hostile and odd uploads, sent over HTTP to one real `vreyesam serve` process.

Every input is generated here (no binary fixtures). Most are refused before inference and cost nothing;
the valid odd ones (16-bit, palette, CMYK, progressive, polyglot, 1x1) are 64x48 with points=1 to keep
each prediction cheap. Every error answer must be JSON {"error": {"code", "message"}} without traceback
text, paths, library names or versions, and no response may carry a `server` header. After the corpus the
server must still be healthy and predict.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest

from tests.reliability import corpus
from tests.reliability.http_checks import assert_clean_error, raw_exchange, read_response
from tests.server_harness import SHARED_SERVER_LIMITS, ServerProcess

MAX_BODY = int(SHARED_SERVER_LIMITS["VREYESAM_MAX_BODY_BYTES"])
PARAMS = {"points": 1, "seed": 1}


@pytest.fixture(scope="module")
def server(served: ServerProcess) -> ServerProcess:
    """The session's shared server, whose limits (SHARED_SERVER_LIMITS) this corpus crosses."""
    return served


def _address(server: ServerProcess) -> tuple[str, int]:
    parts = urlsplit(server.base_url)
    return str(parts.hostname), int(parts.port or 80)


def _wide_png() -> bytes:
    ok, encoded = cv2.imencode(".png", np.zeros((1, 20000, 3), np.uint8))
    assert ok
    return encoded.tobytes()


def _truncated(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def _huge_png() -> bytes:
    data = corpus.png_declaring(50_000, 50_000)
    assert len(data) < 1000  # a few hundred bytes declaring 2.5 gigapixels
    return data


# Raw uploads: (id, body builder, Content-Type, expected status, expected error code; None = a 200 answer).
RAW_CASES: list[tuple[str, Callable[[], bytes], str, int, str | None]] = [
    ("truncated-jpeg", lambda: _truncated(corpus.jpeg(), 0.5), "image/jpeg", 422, "undecodable_image"),
    ("truncated-png", lambda: _truncated(corpus.png(), 0.6), "image/png", 422, "undecodable_image"),
    # Pillow warns about the EXIF while reading the header; the missing end then refuses it before inference.
    (
        "jpeg-broken-exif-truncated",
        lambda: _truncated(corpus.jpeg_with_broken_exif(), 0.6),
        "image/jpeg",
        422,
        "undecodable_image",
    ),
    ("jpeg-header-only", lambda: corpus.jpeg()[:200], "image/jpeg", 422, "undecodable_image"),
    ("png-50000x50000-header", _huge_png, "image/png", 413, "image_too_large"),
    ("png-20000x1", _wide_png, "image/png", 413, "image_too_large"),
    ("bmp-50000x50000-header", lambda: corpus.bmp_declaring(50_000, 50_000), "image/bmp", 413, "image_too_large"),
    ("bmp-truncated-pixels", lambda: corpus.bmp_declaring(64, 48), "image/bmp", 422, "undecodable_image"),
    ("tiff-50000x50000-header", lambda: corpus.tiff_declaring(50_000, 50_000), "image/tiff", 413, "image_too_large"),
    ("webp-16000x16000-canvas", lambda: corpus.webp_vp8x_declaring(16000, 16000), "image/webp", 413, "image_too_large"),
    ("png-0x0", lambda: corpus.png_declaring(0, 0), "image/png", 422, "undecodable_image"),
    (
        "png-bad-crc",
        lambda: corpus.png()[:29] + b"\x00\x00\x00\x00" + corpus.png()[33:],
        "image/png",
        422,
        "undecodable_image",
    ),
    ("gif", corpus.gif, "image/gif", 415, "unsupported_format"),
    ("svg", lambda: corpus.SVG, "image/svg+xml", 415, "unsupported_format"),
    ("html-as-png", lambda: corpus.HTML, "image/png", 415, "unsupported_format"),
    ("html-as-html", lambda: corpus.HTML, "text/html", 415, "unsupported_media_type"),
    ("zip", corpus.zip_archive, "application/octet-stream", 415, "unsupported_format"),
    ("zip-content-type", corpus.zip_archive, "application/zip", 415, "unsupported_media_type"),
    ("empty-body", lambda: b"", "image/png", 415, "unsupported_format"),
    ("png-as-text-plain", corpus.png, "text/plain", 415, "unsupported_media_type"),
    ("png-without-content-type", corpus.png, "", 415, "unsupported_media_type"),
    ("form-urlencoded", lambda: b"image=abc", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    # Valid, if unusual: answered like any image.
    ("png-16bit", corpus.png_16bit, "image/png", 200, None),
    ("png-palette", corpus.png_palette, "image/png", 200, None),
    ("jpeg-cmyk", corpus.jpeg_cmyk, "image/jpeg", 200, None),
    ("jpeg-progressive", corpus.jpeg_progressive, "application/octet-stream", 200, None),
    # Trailing data after a complete JPEG is ignored (see runtime/decode.py): the JPEG is what is read.
    ("jpeg-zip-polyglot", corpus.jpeg_zip_polyglot, "image/jpeg", 200, None),
    ("png-1x1", lambda: corpus.png(1, 1), "image/png", 200, None),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [pytest.param(build, ctype, status, code, id=name) for name, build, ctype, status, code in RAW_CASES],
)
def test_raw_upload(
    server: ServerProcess, body: Callable[[], bytes], content_type: str, status: int, code: str | None
) -> None:
    data = body()
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(server.base_url + "/predict", params=PARAMS, content=data, headers=headers, timeout=120)
    if code is not None:
        assert_clean_error(response.status_code, response.headers, response.content, status, code)
        return
    assert response.status_code == 200, response.text[:300]
    assert "server" not in response.headers
    answer = response.json()
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert answer["image"] == {"width": expected.shape[1], "height": expected.shape[0]}
    assert answer["parameters"]["points"] == 1
    assert set(answer["outputs"]) == {"mask"}


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "reliabilityboundary") -> bytes:
    """A multipart/form-data body from (field name, file name or None, content)."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


MULTIPART = "multipart/form-data; boundary=reliabilityboundary"
GIF = corpus.gif()

# Multipart uploads: (id, body builder, Content-Type, expected status, expected code).
MULTIPART_CASES: list[tuple[str, Callable[[], bytes], str, int, str]] = [
    (
        "hundreds-of-fields",
        lambda: _multipart([(f"field{i}", None, b"x") for i in range(500)] + [("image", "a.gif", GIF)]),
        MULTIPART,
        400,
        "bad_request",
    ),
    (
        "hundreds-of-files",
        lambda: _multipart([(f"file{i}", f"{i}.png", b"x") for i in range(300)]),
        MULTIPART,
        400,
        "bad_request",
    ),
    (
        "two-image-files",
        lambda: _multipart([("image", "a.gif", GIF), ("image", "b.gif", GIF)]),
        MULTIPART,
        400,
        "bad_request",
    ),
    ("huge-field-name", lambda: _multipart([("A" * 1_000_000, "a.gif", GIF)]), MULTIPART, 400, "bad_request"),
    ("huge-file-name", lambda: _multipart([("image", "A" * 1_000_000, GIF)]), MULTIPART, 400, "bad_request"),
    (
        "huge-part-header",
        lambda: b"--reliabilityboundary\r\nX-Junk: " + b"j" * 1_500_000 + b"\r\n\r\nx\r\n--reliabilityboundary--\r\n",
        MULTIPART,
        400,
        "bad_request",
    ),
    ("no-image-field", lambda: _multipart([("other", "a.png", corpus.png())]), MULTIPART, 422, "missing_image"),
    (
        "image-as-text-field",
        lambda: _multipart([("image", None, b"hello"), ("x", "x.png", b"x")]),
        MULTIPART,
        422,
        "missing_image",
    ),
    ("gif-in-image-field", lambda: _multipart([("image", "a.gif", GIF)]), MULTIPART, 415, "unsupported_format"),
    ("no-boundary-parameter", lambda: _multipart([("image", "a.gif", GIF)]), "multipart/form-data", 400, "bad_request"),
    (
        "empty-boundary",
        lambda: _multipart([("image", "a.gif", GIF)]),
        "multipart/form-data; boundary=",
        400,
        "bad_request",
    ),
    (
        "wrong-boundary",
        lambda: _multipart([("image", "a.gif", GIF)]),
        "multipart/form-data; boundary=other",
        400,
        "bad_request",
    ),
    (
        "5000-char-boundary",
        lambda: _multipart([("image", "a.gif", GIF)]),
        "multipart/form-data; boundary=" + "b" * 5000,
        400,
        "bad_request",
    ),
    ("binary-garbage-body", lambda: b"\x00\xff" * 5000, MULTIPART, 400, "bad_request"),
    (
        "part-without-disposition",
        lambda: b"--reliabilityboundary\r\nContent-Disposition\r\n\r\nxx\r\n--reliabilityboundary--\r\n",
        MULTIPART,
        400,
        "bad_request",
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [pytest.param(build, ctype, status, code, id=name) for name, build, ctype, status, code in MULTIPART_CASES],
)
def test_multipart_upload(
    server: ServerProcess, body: Callable[[], bytes], content_type: str, status: int, code: str
) -> None:
    data = body()
    assert len(data) < MAX_BODY  # these must reach the multipart parser, not the body cap
    response = httpx.post(
        server.base_url + "/predict", params=PARAMS, content=data, headers={"content-type": content_type}, timeout=60
    )
    assert_clean_error(response.status_code, response.headers, response.content, status, code)


def _head(extra: str) -> bytes:
    return f"POST /predict?points=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n{extra}\r\n".encode()


def test_declared_length_over_the_cap_is_refused_before_reading(server: ServerProcess) -> None:
    # Only the head is sent: the answer must come without the server waiting for (or reading) the body.
    started = time.monotonic()
    status, headers, body = raw_exchange(*_address(server), _head(f"Content-Length: {MAX_BODY + 1}\r\n"), timeout_s=10)
    assert time.monotonic() - started < 5
    assert_clean_error(status, headers, body, 413, "body_too_large")


def test_chunked_body_over_the_cap_is_cut_off_while_streaming(server: ServerProcess) -> None:
    # No Content-Length: chunks of 50 kB up to one byte over the cap, no final chunk; the answer must come
    # as soon as the cap is passed (the client never finishes the body).
    def chunks() -> Iterator[bytes]:
        sent = 0
        while sent <= MAX_BODY:
            size = min(50_000, MAX_BODY + 1 - sent)
            sent += size
            yield b"%x\r\n" % size + b"\x89" * size + b"\r\n"

    status, headers, body = raw_exchange(*_address(server), _head("Transfer-Encoding: chunked\r\n"), chunks(), 30)
    assert_clean_error(status, headers, body, 413, "body_too_large")


def test_httpx_chunked_upload_over_the_cap(server: ServerProcess) -> None:
    # The same through an ordinary client streaming a generator (Transfer-Encoding: chunked).
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 100_000 + 1):
            yield b"\xff" * 100_000

    # No way out: httpx reads the answer even if the server closes while it still writes, so the 413 must
    # be there (a server that closed without one raises here).
    response = httpx.post(
        server.base_url + "/predict", params=PARAMS, content=chunks(), headers={"content-type": "image/jpeg"}
    )
    assert_clean_error(response.status_code, response.headers, response.content, 413, "body_too_large")


def test_client_disconnect_mid_upload_is_not_a_server_error(server: ServerProcess) -> None:
    """A client that declares 10 kB, sends 100 bytes and goes away is the client's failure, not a 500.

    Nobody is left to read an answer, so the server's own log is what is checked: its one access line for the
    request (found by our X-Request-ID) records 499 (client closed request), and no unhandled error is logged.
    """
    request_id = "reliability-disconnect-1"
    offset = len(server.log())
    host, port = _address(server)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(_head(f"Content-Length: 10000\r\nX-Request-ID: {request_id}\r\n") + b"\x89PNG" + b"x" * 96)
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(ConnectionError, TimeoutError, OSError):  # closing without an answer is fine
            read_response(sock, timeout_s=10)
    deadline = time.monotonic() + 10
    while request_id not in server.log()[offset:] and time.monotonic() < deadline:
        time.sleep(0.1)
    new_lines = server.log()[offset:].splitlines()
    access = [json.loads(line) for line in new_lines if request_id in line]
    # One access line, with the status the log convention gives a client that left: 499, not a 500.
    assert [entry.get("status") for entry in access] == [499], json.dumps(access)
    assert not [line for line in new_lines if "unhandled error" in line or "Exception in ASGI" in line], new_lines


# The cases that make the decoders complain (OpenCV's native error log on a truncated BMP, Pillow's
# UserWarning on the broken EXIF) and a few more refused ones: sent again by the tests below, so that each
# proves its point on its own, whatever ran before it.
COMPLAINERS = ("bmp-truncated-pixels", "jpeg-broken-exif-truncated", "truncated-png", "png-50000x50000-header", "gif")


def _send_complainers(server: ServerProcess, tag: str) -> list[str]:
    """Send the COMPLAINERS, each with its own X-Request-ID (`tag` and its name); those ids."""
    sent = []
    for name, build, content_type, status, code in RAW_CASES:
        if name in COMPLAINERS:
            request_id = f"{tag}-{name}"
            response = httpx.post(
                server.base_url + "/predict",
                params=PARAMS,
                content=build(),
                headers={"content-type": content_type, "x-request-id": request_id},
            )
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)
            sent.append(request_id)
    return sent


def test_still_healthy_and_predicting_after_hostile_inputs(server: ServerProcess) -> None:
    _send_complainers(server, "healthy-after")
    assert server.process.poll() is None
    health = httpx.get(server.base_url + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert "server" not in health.headers
    response = httpx.post(
        server.base_url + "/predict",
        params={"points": 2},
        content=corpus.png(),
        headers={"content-type": "image/png"},
        timeout=120,
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json()["image"] == {"width": 64, "height": 48}
    assert "server" not in response.headers
    assert "Traceback" not in server.log()


def test_server_log_is_json_lines(server: ServerProcess, model_dir: Path) -> None:
    """runtime/http/logs.py: one JSON object per line, never a file path, on stderr, whatever the input was.

    The decoders' complaints about the inputs sent first must not reach stderr as raw text, which breaks
    a JSON log pipeline and carries library versions and source paths. A request's access line is written
    after its answer, and after everything the decoder said about its image: once every request's line is
    in the log, so is anything the decoders printed.
    """
    offset = len(server.log())
    request_ids = _send_complainers(server, "json-lines")
    deadline = time.monotonic() + 30
    while not all(f'"request_id": "{request_id}"' in server.log()[offset:] for request_id in request_ids):
        assert time.monotonic() < deadline, f"not every access line of {request_ids} is in the log"
        time.sleep(0.05)  # a poll interval
    log = server.log()
    not_json = []
    for line in log.splitlines():  # every line so far, including this test's own
        try:
            entry = json.loads(line)
        except ValueError:
            not_json.append(line)
            continue
        if not isinstance(entry, dict):
            not_json.append(line)
    assert not_json == [], "\n".join(not_json[:20])
    assert str(model_dir) not in log
    assert not re.findall(r"site-packages|dist-packages|\.py\b|\.cpp\b|\.hpp\b", log), "a source path in the log"
