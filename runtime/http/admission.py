"""Bounded concurrency with a bounded wait queue: overload is answered at once, memory stays bounded.

At most `max_running` predictions run; at most `max_waiting` more wait for a slot, each for at most
`timeout_s`. A request beyond both, or one that waited too long, is turned away (the API answers 503
with Retry-After) instead of piling up decoded images in memory. Every change of the two counts, and every
refusal, is reported to the recorder (the metrics' in-flight and queued gauges, rejections by reason).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from vreyesam.runtime.telemetry.metrics import NoRecorder, Recorder


class Overloaded(Exception):
    """No slot is free and the wait queue is full, or the wait timed out; `reason` is logged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Admission:
    def __init__(
        self, *, max_running: int, max_waiting: int, timeout_s: float, recorder: Recorder | None = None
    ) -> None:
        self._slots = asyncio.Semaphore(max_running)
        self._max_waiting = max_waiting
        self._timeout_s = timeout_s
        self._recorder = recorder or NoRecorder()
        self.running = 0
        self.waiting = 0

    def _report(self) -> None:
        self._recorder.admission(self.running, self.waiting)

    def _refuse(self, reason: str) -> Overloaded:
        self._recorder.rejected(reason)
        return Overloaded(reason)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold a slot for the block; yields the seconds spent waiting for it."""
        started = time.perf_counter()
        if self._slots.locked():
            if self.waiting >= self._max_waiting:
                raise self._refuse("queue_full")
            self.waiting += 1
            self._report()
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=self._timeout_s)
            except TimeoutError:
                raise self._refuse("queue_timeout") from None
            finally:
                self.waiting -= 1
                self._report()
        else:
            await self._slots.acquire()
        self.running += 1
        self._report()
        try:
            yield time.perf_counter() - started
        finally:
            self.running -= 1
            self._slots.release()
            self._report()
