"""Milliseconds per named stage of one prediction, and how much of them the engines took."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from vreyesam.runtime.engines.graph import Graph, Rows, Value


@dataclass(frozen=True)
class Timings:
    """Milliseconds per stage, in the order the stages ran; `total` is their sum, `host` the part of it
    spent outside engine runs (fitting, sampling, copies, bookkeeping)."""

    stages: tuple[tuple[str, float], ...] = ()
    engine_ms: float = 0.0

    @property
    def total(self) -> float:
        return round(sum(ms for _, ms in self.stages), 3)

    def as_dict(self) -> dict[str, float]:
        return {**dict(self.stages), "total": self.total, "host": round(self.total - self.engine_ms, 3)}


class Clock:
    """One prediction's stage timings, and the time spent inside engine runs."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, float]] = []
        self.engine_ms = 0.0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.stages.append((name, round((time.perf_counter() - start) * 1000.0, 3)))

    def run(
        self,
        graph: Graph,
        feeds: Mapping[str, Value],
        fetch: Sequence[str] | None = None,
        into: Mapping[str, Rows] | None = None,
    ) -> dict[str, Value]:
        start = time.perf_counter()
        try:
            return graph.run(feeds, fetch, into)
        finally:
            self.add_engine_time((time.perf_counter() - start) * 1000.0)

    def add_engine_time(self, ms: float) -> None:
        """Engine time spent for this prediction, also by another thread (a shared encoder batch)."""
        self.engine_ms += ms

    def timings(self) -> Timings:
        return Timings(tuple(self.stages), round(self.engine_ms, 3))
