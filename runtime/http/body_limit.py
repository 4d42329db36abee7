"""ASGI middleware: the request-body cap, enforced while the body streams in, and the memory all bodies
in flight may take together.

Starlette has no body limit, and multipart file parts spool to disk without one. This wrapper refuses a
declared Content-Length over the cap before the app reads anything, and counts the bytes of every body
chunk as it arrives, so a chunked or lying upload is cut off at the cap instead of being buffered whole.

Answering early is not enough: a client that sends its whole body before reading (Python's urllib, many
simple clients) gets a connection reset instead of the 413 when the server closes with unread bytes. So
before answering, the rest of the body is read and discarded, as nginx's lingering close does, up to
`drain_bytes` or until the client pauses for `drain_idle_s`; a client that announced `Expect: 100-continue`
has sent nothing yet and is answered at once.

Memory no client can exhaust: each body reserves its declared length (a chunked one: the cap) from the
process's budget for bodies in flight before any of it is read, and gives it back when its request is
answered; a body that does not fit is refused with 503 and Retry-After, not buffered. A body must arrive
within `body_timeout_s` of its first read, else 408 and the connection is closed: a client that stalls
before its last byte holds neither memory nor a connection for long. (The request head has its deadline
in the protocol, see `server`.) Starlette's own body limit counts bytes, but has neither the budget, the
deadline, the drain nor this API's error shape, so this middleware stays.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vreyesam.runtime.http.errors import (
    BodyTooLarge,
    ErrorAnswer,
    body_too_large,
    body_too_slow,
    json_error_body,
    uploads_busy,
)
from vreyesam.runtime.telemetry.metrics import NoRecorder, Recorder

DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_IDLE_S = 1.0


class BodyTooSlow(Exception):
    """The request body did not arrive within the deadline."""


class BodyBudget:
    """Bytes of request bodies this process may hold at once."""

    def __init__(self, total_bytes: int, recorder: Recorder | None = None) -> None:
        self.total_bytes = total_bytes
        self.held_bytes = 0
        self.bodies = 0
        self._recorder = recorder or NoRecorder()

    def reserve(self, size: int) -> bool:
        if self.held_bytes + size > self.total_bytes:
            self._recorder.rejected("body_budget")
            return False
        self.held_bytes += size
        self.bodies += 1
        self._recorder.bodies_in_flight(self.bodies, self.held_bytes)
        return True

    def release(self, size: int) -> None:
        self.held_bytes -= size
        self.bodies -= 1
        self._recorder.bodies_in_flight(self.bodies, self.held_bytes)


def answered(scope: Scope, answer: ErrorAnswer) -> None:
    """Note the error answer's outcome for the access log and the metrics."""
    scope.setdefault("state", {})["outcome"] = answer.outcome


async def send_error(send: Send, answer: ErrorAnswer) -> None:
    """Send an error answer from raw ASGI code, closing the connection afterwards."""
    body = json_error_body(answer)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((name.lower().encode(), value.encode()) for name, value in answer.headers.items()),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def drain(receive: Receive, limit_bytes: int, idle_s: float) -> int:
    """Read and discard the request body until it ends, `limit_bytes` were read, or it stalls; bytes read."""
    drained = 0
    while drained < limit_bytes:
        try:
            message = await asyncio.wait_for(receive(), timeout=idle_s)
        except TimeoutError:
            break
        if message["type"] != "http.request":
            break
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return drained


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        budget: BodyBudget | None = None,
        body_timeout_s: float | None = None,
        recorder: Recorder | None = None,
        drain_bytes: int = DRAIN_BYTES,
        drain_idle_s: float = DRAIN_IDLE_S,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.budget = budget or BodyBudget(max_body_bytes * 64)
        self.body_timeout_s = body_timeout_s
        self.recorder = recorder or NoRecorder()
        self.drain_bytes = drain_bytes
        self.drain_idle_s = drain_idle_s

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, answer: ErrorAnswer) -> None:
        headers = dict(scope["headers"])
        if headers.get(b"expect", b"").lower() != b"100-continue":
            await drain(receive, self.drain_bytes, self.drain_idle_s)
        answered(scope, answer)
        await send_error(send, answer)

    def _reservation(self, scope: Scope) -> int | ErrorAnswer:
        """The bytes this request's body may take (0: none announced), or the answer that refuses it."""
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is None:
            return self.max_body_bytes if b"transfer-encoding" in headers else 0
        try:
            size = int(declared)
        except ValueError:
            return ErrorAnswer(400, "bad_request", "invalid Content-Length header")
        return body_too_large(self.max_body_bytes) if size > self.max_body_bytes else size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reservation = self._reservation(scope)
        if isinstance(reservation, ErrorAnswer):
            if reservation.status == 400:
                answered(scope, reservation)
                await send_error(send, reservation)
            else:
                await self._refuse(scope, receive, send, reservation)
            return
        if reservation and not self.budget.reserve(reservation):
            await self._refuse(scope, receive, send, uploads_busy())
            return
        try:
            await self._limited(scope, receive, send)
        finally:
            if reservation:
                self.budget.release(reservation)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        received = 0
        deadline: float | None = None
        complete = False  # a later receive waits for the client's disconnect: no deadline on that
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, deadline, complete
            if self.body_timeout_s is None or complete:
                message = await receive()
            else:
                deadline = deadline or loop.time() + self.body_timeout_s
                try:
                    message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._refuse(scope, receive, send, body_too_large(self.max_body_bytes))
        except BodyTooSlow:
            self.recorder.rejected("body_timeout")
            if not response_started:
                answer = body_too_slow(self.body_timeout_s or 0.0)
                answered(scope, answer)
                await send_error(send, answer)
