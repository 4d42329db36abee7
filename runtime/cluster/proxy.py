"""Inside Ray Serve's HTTP proxy: the body cap before anything is buffered, and the API's error shape.

Ray Serve's proxy has no body limit: it reads the whole request into a queue that the replica pulls from,
so a 400 MB upload sits in the proxy's and then the replica's memory before the app's own cap can refuse
it. Ray runs the middlewares that `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH` names (`middlewares` below)
around its proxy on every node, so the same cap as the app's (`VREYESAM_MAX_BODY_BYTES`) is enforced where
the bytes arrive:
- a declared Content-Length over the cap: 413 at once (the http room's `BodyLimitMiddleware`, which drains
  what the client sends first so that every client reads the answer);
- no Content-Length (chunked): the body is read here up to the cap, then handed on; one byte more is a 413.
So per connection the proxy holds at most the cap, and the replica never sees an oversized body. As in one
server, all bodies in flight share the node's budget (VREYESAM_BODY_BUDGET_BYTES: a chunked body reserves
the cap while it is read here, then its size; one that does not fit is refused with 503 and Retry-After),
and a body must arrive within VREYESAM_BODY_TIMEOUT_S (else 408).

The proxy also answers some requests itself, in plain text: backpressure (503 or 429 with Retry-After when
every replica and the queue are full), no replica yet, a timeout; a request whose replica died gets no
answer at all. Those become the API's JSON errors with the same statuses (`errors`), so a client reads one
error shape whether it talks to `vreyesam serve` or to the cluster. Answers of the app pass untouched.
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vreyesam.runtime.http.admission import Overloaded
from vreyesam.runtime.http.body_limit import (
    DRAIN_BYTES,
    DRAIN_IDLE_S,
    BodyBudget,
    BodyLimitMiddleware,
    drain,
    send_error,
)
from vreyesam.runtime.http.errors import (
    RETRY_AFTER_S,
    ErrorAnswer,
    body_too_large,
    body_too_slow,
    error_answer,
    unavailable,
    uploads_busy,
)
from vreyesam.runtime.settings import load_settings

_APP_TYPES = (b"application/json", b"image/png")  # what the app answers with; anything else is the proxy's


def middlewares() -> list[Middleware]:
    """Ray's proxy callback: the gate, with the cap, budget and deadline of this node's environment."""
    settings = load_settings()
    return [
        Middleware(
            ProxyGate,
            max_body_bytes=settings.max_body_bytes,
            budget_bytes=settings.body_budget_bytes,
            body_timeout_s=settings.body_timeout_s,
        )
    ]


def proxy_answer(status: int, headers: dict[bytes, bytes]) -> ErrorAnswer:
    """The API's answer for an error the proxy wrote itself with this status."""
    if status in (429, 503):
        overloaded = error_answer(Overloaded("cluster_full"))
        retry_after = headers.get(b"retry-after", str(RETRY_AFTER_S).encode()).decode("latin-1")
        return ErrorAnswer(status, overloaded.code, overloaded.message, {"Retry-After": retry_after})
    return error_answer(HTTPException(status))


class _AnswerShaper:
    """Wraps `send`: the proxy's own plain-text errors go out as the API's JSON ones."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self._replaced: ErrorAnswer | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            headers = {name.lower(): value for name, value in message.get("headers", [])}
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if message["status"] >= 400 and kind not in _APP_TYPES:
                self._replaced = proxy_answer(message["status"], headers)
                return
            # Ray's proxy adds the X-Request-ID the app already echoes: one copy of each header line.
            unique = dict.fromkeys((bytes(name), bytes(value)) for name, value in message.get("headers", []))
            message = {**message, "headers": list(unique)}
        elif message["type"] == "http.response.body" and self._replaced is not None:
            if not message.get("more_body", False):
                await send_error(self._send, self._replaced)
            return
        await self._send(message)

    async def no_answer(self) -> None:
        """The proxy returned without answering (its replica died): a JSON 503 the client may retry."""
        if not self.started:
            await send_error(self._send, unavailable())


class ProxyGate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        budget_bytes: int | None = None,
        body_timeout_s: float | None = None,
        drain_bytes: int = DRAIN_BYTES,
        drain_idle_s: float = DRAIN_IDLE_S,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.budget = BodyBudget(budget_bytes or max_body_bytes * 64)
        self.body_timeout_s = body_timeout_s
        self._drain = (drain_bytes, drain_idle_s)
        # Declared lengths: refused before any byte is read; within them the count cannot be exceeded.
        self.app = BodyLimitMiddleware(
            app,
            max_body_bytes=max_body_bytes,
            budget=self.budget,
            body_timeout_s=body_timeout_s,
            drain_bytes=drain_bytes,
            drain_idle_s=drain_idle_s,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        shaper = _AnswerShaper(send)
        if b"content-length" not in dict(scope["headers"]):
            # Read here within the cap's reservation, then handed on with its length declared (the middleware
            # reserves that size in turn).
            if not self.budget.reserve(self.max_body_bytes):
                await drain(receive, *self._drain)
                await send_error(send, uploads_busy())
                return
            try:
                buffered = await self._read_capped(receive)
            finally:
                self.budget.release(self.max_body_bytes)
            if isinstance(buffered, ErrorAnswer):
                await send_error(send, buffered)
                return
            size = sum(len(message.get("body", b"")) for message in buffered)
            headers = [(k, v) for k, v in scope["headers"] if k not in (b"transfer-encoding", b"content-length")]
            scope["headers"] = [*headers, (b"content-length", b"%d" % size)]
            receive = _replay(buffered, receive)
        await self.app(scope, receive, shaper)
        await shaper.no_answer()

    async def _read_capped(self, receive: Receive) -> list[Message] | ErrorAnswer:
        """The body's messages, read here up to the cap and within the deadline; else the answer refusing it
        (after draining the rest of an oversized body)."""
        messages: list[Message] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = None if self.body_timeout_s is None else loop.time() + self.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), None if deadline is None else deadline - loop.time())
            except TimeoutError:
                return body_too_slow(self.body_timeout_s or 0.0)
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client left: the app sees the disconnect
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                await drain(receive, *self._drain)
                return body_too_large(self.max_body_bytes)
            if not message.get("more_body", False):
                return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives the buffered messages first, then whatever the client sends (a disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
