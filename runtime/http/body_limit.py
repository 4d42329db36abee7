"""ASGI middleware: the request-body cap, enforced while the body streams in.

Starlette has no body limit, and multipart file parts spool to disk without one. This wrapper refuses a
declared Content-Length over the cap before the app reads anything, and counts the bytes of every body
chunk as it arrives, so a chunked or lying upload is cut off at the cap instead of being buffered whole.

Answering early is not enough: a client that sends its whole body before reading (Python's urllib, many
simple clients) gets a connection reset instead of the 413 when the server closes with unread bytes. So
before answering, the rest of the body is read and discarded, as nginx's lingering close does, up to
`drain_bytes` or until the client pauses for `drain_idle_s`; a client that announced `Expect: 100-continue`
has sent nothing yet and is answered at once.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vreyesam.runtime.http.errors import BodyTooLarge, ErrorAnswer, body_too_large, json_error_body

DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_IDLE_S = 1.0


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
        self, app: ASGIApp, *, max_body_bytes: int, drain_bytes: int = DRAIN_BYTES, drain_idle_s: float = DRAIN_IDLE_S
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.drain_bytes = drain_bytes
        self.drain_idle_s = drain_idle_s

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        if headers.get(b"expect", b"").lower() != b"100-continue":
            await drain(receive, self.drain_bytes, self.drain_idle_s)
        await send_error(send, body_too_large(self.max_body_bytes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_body_bytes
            except ValueError:
                await send_error(send, ErrorAnswer(400, "bad_request", "invalid Content-Length header"))
                return
            if too_large:
                await self._refuse(scope, receive, send)
                return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
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
                await self._refuse(scope, receive, send)
