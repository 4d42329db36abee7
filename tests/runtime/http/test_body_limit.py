"""The body cap: refused before it is buffered, and answered so that every client reads its 413.

The middleware is tested on its own over a minimal ASGI app (what it wraps does not matter to it), then
through the real server with three kinds of client: urllib (sends the whole body before it reads),
httpx, and a raw socket.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.asgi_client import body_size, exchange
from tests.server_harness import SHARED_SERVER_LIMITS, ServerProcess
from vreyesam.runtime.http.body_limit import BodyBudget, BodyLimitMiddleware

CAP = 1000
Message = dict[str, Any]


async def _echo_length(scope: dict[str, Any], receive: Callable[[], Awaitable[Message]], send: Any) -> None:
    """Reads the whole body and answers 200 with its length."""
    body = str(await body_size(receive)).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def _run(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[list[Message], int]:
    """Messages the middleware sends for a request with these headers and body chunks; chunks it read."""
    sent, consumed, _ = exchange(
        BodyLimitMiddleware(_echo_length, max_body_bytes=CAP, drain_idle_s=0.2), headers, chunks
    )
    return sent, consumed


def _status_and_error(sent: list[Message]) -> tuple[int, dict[str, Any] | None]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], (json.loads(body)["error"] if start["status"] != 200 else None)


def test_each_body_reserves_its_length_from_the_budget_while_its_request_runs() -> None:
    budget = BodyBudget(2 * CAP)
    seen: list[tuple[int, int]] = []

    async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        seen.append((budget.bodies, budget.held_bytes))  # while the request runs
        await _echo_length(scope, receive, send)

    middleware = BodyLimitMiddleware(app, max_body_bytes=CAP, budget=budget, drain_idle_s=0.2)
    sent, _, _ = exchange(middleware, [(b"content-length", b"600")], [b"x" * 600])
    assert _status_and_error(sent)[0] == 200 and seen == [(1, 600)]
    sent, _, _ = exchange(middleware, [(b"transfer-encoding", b"chunked")], [b"x" * 10])
    assert _status_and_error(sent)[0] == 200 and seen[-1] == (1, CAP)  # a chunked body reserves the cap
    assert (budget.bodies, budget.held_bytes) == (0, 0)  # given back


def test_a_body_that_does_not_fit_the_budget_is_refused_unread() -> None:
    budget = BodyBudget(CAP)
    assert budget.reserve(700)  # held by another upload
    middleware = BodyLimitMiddleware(_echo_length, max_body_bytes=CAP, budget=budget, drain_idle_s=0.2)
    sent, _, scope = exchange(middleware, [(b"content-length", b"400")], [b"x" * 400])
    status, error = _status_and_error(sent)
    assert status == 503 and error == {"code": "overloaded", "message": error["message"]}
    assert dict(next(m for m in sent if m["type"] == "http.response.start")["headers"])[b"retry-after"] == b"1"
    assert scope["state"]["outcome"] == "overloaded" and budget.held_bytes == 700


def test_a_body_that_stalls_gets_408_at_the_deadline() -> None:
    middleware = BodyLimitMiddleware(_echo_length, max_body_bytes=CAP, body_timeout_s=0.2, drain_idle_s=0.2)
    sent, _, scope = exchange(middleware, [(b"content-length", b"500")], [b"x" * 100], complete=False)
    status, error = _status_and_error(sent)
    assert status == 408 and error is not None and error["code"] == "request_timeout"
    assert scope["state"]["outcome"] == "timeout"


def test_a_body_within_the_cap_passes() -> None:
    sent, _ = _run([(b"content-length", b"1000")], [b"x" * 600, b"x" * 400])
    assert _status_and_error(sent) == (200, None)


def test_a_declared_length_over_the_cap_is_drained_then_refused() -> None:
    sent, consumed = _run([(b"content-length", b"1500")], [b"x" * 500, b"x" * 500, b"x" * 500])
    assert consumed == 3  # read and dropped, so the client is not reset while still sending
    status, error = _status_and_error(sent)
    assert status == 413 and error == {"code": "body_too_large", "message": "request body is larger than 1000 bytes"}
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert (b"connection", b"close") in start["headers"]


def test_a_client_waiting_for_100_continue_is_answered_without_reading() -> None:
    sent, consumed = _run([(b"content-length", b"5000"), (b"expect", b"100-continue")], [b"x" * 5000])
    assert consumed == 0
    assert _status_and_error(sent)[0] == 413


def test_a_stalled_upload_is_answered_after_the_idle_time() -> None:
    sent, consumed = _run([(b"content-length", b"5000")], [b"x" * 100])  # then nothing more
    assert consumed == 1 and _status_and_error(sent)[0] == 413


def test_a_streamed_body_is_cut_off_at_the_cap() -> None:
    sent, consumed = _run([], [b"x" * 600, b"x" * 600, b"x" * 600, b"x" * 600])
    assert _status_and_error(sent)[0] == 413
    assert consumed == 4  # the app read two chunks; the rest was drained


def test_an_invalid_content_length_is_a_400() -> None:
    sent, _ = _run([(b"content-length", b"12abc")], [b""])
    assert _status_and_error(sent) == (400, {"code": "bad_request", "message": "invalid Content-Length header"})


# ------------------------------------------------------------------ the real server, three clients

OVER_CAP = b"\x89PNG\r\n\x1a\n" + b"\0" * (int(SHARED_SERVER_LIMITS["VREYESAM_MAX_BODY_BYTES"]) + 500_000)


@pytest.mark.parametrize("attempt", range(3))
def test_urllib_reads_the_413(served: ServerProcess, attempt: int) -> None:
    request = urllib.request.Request(
        served.base_url + "/predict", data=OVER_CAP, method="POST", headers={"Content-Type": "image/png"}
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=60)
    assert answer.value.code == 413
    assert json.loads(answer.value.read())["error"]["code"] == "body_too_large"


def test_httpx_reads_the_413(served: ServerProcess) -> None:
    response = httpx.post(
        served.base_url + "/predict", content=OVER_CAP, headers={"content-type": "image/png"}, timeout=60
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_a_raw_socket_that_sends_everything_first_reads_the_413(served: ServerProcess) -> None:
    parts = urlsplit(served.base_url)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(OVER_CAP)}\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(head + OVER_CAP)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"code":"body_too_large"' in answer
