"""A scripted HTTP client for ASGI middleware tests: a request's body in chunks, and every message sent back.

The middleware under test gets a `receive` that hands out the chunks (then waits, like a client that sends
nothing more) and a `send` that records; the tests read what a real client would have received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


def exchange(
    app: ASGIApp, headers: list[tuple[bytes, bytes]], chunks: list[bytes], *, complete: bool = True
) -> tuple[list[Message], int, dict]:
    """(messages `app` sent, chunks it read, the request's scope) for one HTTP request with these headers;
    `complete=False`: the client stalls after its chunks, before the end of its body."""
    sent: list[Message] = []
    pending = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1 or not complete}
        for index, chunk in enumerate(chunks)
    ]
    consumed = 0

    async def receive() -> Message:
        nonlocal consumed
        if consumed < len(pending):
            consumed += 1
            return pending[consumed - 1]
        await asyncio.sleep(3600)  # a client that sends nothing more
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent, consumed, scope


async def body_size(receive: Callable[[], Awaitable[Message]]) -> int:
    """What an app that reads the whole request body gets: its size in bytes."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    return size
