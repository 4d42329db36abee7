"""Bounded concurrency with a bounded wait queue: overload is answered at once, memory stays bounded.

At most `max_running` predictions run; at most `max_waiting` more wait for a slot, each for at most
`timeout_s`. A request beyond both, or one that waited too long, is turned away (the API answers 503
with Retry-After) instead of piling up decoded images in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Overloaded(Exception):
    """No slot is free and the wait queue is full, or the wait timed out; `reason` is logged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Admission:
    def __init__(self, *, max_running: int, max_waiting: int, timeout_s: float) -> None:
        self._slots = asyncio.Semaphore(max_running)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._timeout_s = timeout_s

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked():
            if self._waiting >= self._max_waiting:
                raise Overloaded("queue_full")
            self._waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=self._timeout_s)
            except TimeoutError:
                raise Overloaded("queue_timeout") from None
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()
