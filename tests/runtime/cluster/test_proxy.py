"""The gate Ray Serve's proxy runs: the body cap before buffering, and the API's shape for the proxy's answers.

Tested on its own over small ASGI apps standing where Ray's proxy stands (the gate does not care what it
wraps); the two-node tests (test_serve_cluster.py) run it inside Ray's real proxy. Needs no Ray.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from tests.asgi_client import body_size, exchange
from vreyesam.runtime.cluster.proxy import ProxyGate, middlewares

CAP = 1000
Message = dict[str, Any]
App = Callable[[dict[str, Any], Callable[[], Awaitable[Message]], Any], Awaitable[None]]


def _answering(status: int, content_type: bytes, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> App:
    """An inner app that reads the whole body, then answers as given (the proxy's plain text, or the app's JSON)."""

    async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        scope["received"] = await body_size(receive)
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def _silent(scope: dict[str, Any], receive: Callable[[], Awaitable[Message]], send: Any) -> None:
    """What Ray's proxy does when the replica serving the request died: it returns without an answer."""
    await receive()


def _run(app: App, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[list[Message], int, dict]:
    """(messages sent to the client, chunks read from it, the scope) for one request through the gate."""
    return exchange(ProxyGate(app, max_body_bytes=CAP, drain_idle_s=0.2), headers, chunks)


def _answer(sent: list[Message]) -> tuple[int, dict[bytes, bytes], bytes]:
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return starts[0]["status"], dict(starts[0]["headers"]), body


OK_APP = _answering(200, b"application/json", b'{"status":"ok"}')


def test_a_streamed_body_within_the_cap_reaches_the_proxy_whole() -> None:
    sent, consumed, scope = _run(OK_APP, [(b"transfer-encoding", b"chunked")], [b"x" * 400, b"x" * 400, b"x" * 200])
    assert _answer(sent)[0] == 200 and consumed == 3 and scope["received"] == 1000


def test_a_streamed_body_over_the_cap_never_reaches_the_proxy() -> None:
    sent, consumed, scope = _run(OK_APP, [(b"transfer-encoding", b"chunked")], [b"x" * 600] * 5)
    status, _, body = _answer(sent)
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"
    assert "received" not in scope  # Ray's proxy (and so the replica) saw none of it
    assert consumed == 5  # the rest was drained, so the client reads the 413 instead of a reset


def test_a_declared_length_over_the_cap_is_refused_before_the_proxy_reads() -> None:
    sent, _, scope = _run(OK_APP, [(b"content-length", b"5000"), (b"expect", b"100-continue")], [b"x" * 5000])
    assert _answer(sent)[0] == 413 and "received" not in scope


def test_the_apps_answers_pass_untouched_but_duplicate_header_lines() -> None:
    request_id = (b"x-request-id", b"abc")
    app = _answering(415, b"application/json", b'{"error":{"code":"x","message":"y"}}', [request_id, request_id])
    status, _, body = _answer(_run(app, [(b"content-length", b"3")], [b"abc"])[0])
    assert (status, body) == (415, b'{"error":{"code":"x","message":"y"}}')
    start = next(m for m in _run(app, [(b"content-length", b"3")], [b"abc"])[0] if "status" in m)
    assert start["headers"].count(request_id) == 1


def test_the_proxys_backpressure_answer_becomes_the_apis_overloaded_error() -> None:
    for status in (503, 429):
        app = _answering(
            status, b"text/plain; charset=utf-8", b"Request dropped due to backpressure", [(b"retry-after", b"1")]
        )
        got, headers, body = _answer(_run(app, [], [b""])[0])
        assert got == status and headers[b"retry-after"] == b"1"
        assert headers[b"content-type"] == b"application/json"
        assert json.loads(body) == {"error": {"code": "overloaded", "message": "server is busy, retry later"}}


def test_other_plain_answers_of_the_proxy_get_the_apis_shape() -> None:
    app = _answering(408, b"text/plain", b"Request abc timed out after 5.0s.")
    status, _, body = _answer(_run(app, [], [b""])[0])
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
    assert b"abc" not in body  # nothing of Ray's text (request ids, deployment names) reaches the client


def test_no_answer_from_the_proxy_is_a_503_to_retry() -> None:
    status, headers, body = _answer(_run(_silent, [], [b""])[0])
    assert status == 503 and headers[b"retry-after"] == b"1"
    assert json.loads(body)["error"]["code"] == "unavailable"


def test_the_callback_ray_calls_gives_the_gate_with_the_environments_cap(monkeypatch) -> None:
    monkeypatch.setenv("VREYESAM_MAX_BODY_BYTES", "1234")
    monkeypatch.setenv("VREYESAM_BODY_BUDGET_BYTES", "5000")
    monkeypatch.setenv("VREYESAM_BODY_TIMEOUT_S", "7")
    (gate,) = middlewares()
    assert gate.cls is ProxyGate
    assert gate.kwargs == {"max_body_bytes": 1234, "budget_bytes": 5000, "body_timeout_s": 7.0}


def test_bodies_beyond_the_budget_are_refused_before_they_are_read() -> None:
    gate = ProxyGate(OK_APP, max_body_bytes=CAP, budget_bytes=CAP, drain_idle_s=0.2)
    assert gate.budget.reserve(CAP)  # another upload holds the whole budget
    for headers in ([(b"content-length", b"10")], [(b"transfer-encoding", b"chunked")]):
        sent, _, scope = exchange(gate, headers, [b"x" * 10])
        status, answer_headers, body = _answer(sent)
        assert status == 503 and answer_headers[b"retry-after"] == b"1" and "received" not in scope
        assert json.loads(body)["error"]["code"] == "overloaded"
    gate.budget.release(CAP)
    sent, _, scope = exchange(gate, [(b"transfer-encoding", b"chunked")], [b"x" * 10])
    assert _answer(sent)[0] == 200 and scope["received"] == 10 and gate.budget.held_bytes == 0


def test_a_body_that_stalls_is_answered_408_at_the_deadline() -> None:
    gate = ProxyGate(OK_APP, max_body_bytes=CAP, body_timeout_s=0.2, drain_idle_s=0.2)
    for headers in ([(b"content-length", b"500")], [(b"transfer-encoding", b"chunked")]):
        # Part of a longer body, then nothing: the scripted client waits, as a stalled one does.
        sent, _, _ = exchange(gate, headers, [b"x" * 100, b"x" * 100], complete=False)
        status, _, body = _answer(sent)
        assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
    assert gate.budget.held_bytes == 0
