"""The real app in process: the HTTP behaviour tests' seam, synchronised on events, never on sleeps.

`running_app` builds the app with `create_app` (the one factory `vreyesam serve` uses) from `Settings`, a
loader and a per-image function, and runs its lifespan with Starlette's `TestClient`: the loader runs in
the app's own background thread, requests go through every middleware and route, predictions run in the
thread pool behind the app's `Admission`. What a test waits for is an event that proves it happened:

- `RunningApp.loaded` / `wait_ready()`: the loader returned and the app holds the model;
- `RunningApp.load_failed` / `wait_failed()`: the app called its `on_load_failure`;
- `GatedSegment`: a per-image function that counts the calls inside it and holds each one until its
  `release` event is set, so a test knows which requests are inside, waiting or turned away;
- `Admission.waiting` and `.running`, the admission's own counts of requests waiting for a slot and in one.

Timeouts here are deadlines after which a test fails, never durations a test relies on. For the tests
where a real process is the point (signals, the page in a browser, the CLI, several workers) there is
`tests/server_harness.py`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vreyesam.runtime.http.app import SegmenterLoader, create_app
from vreyesam.runtime.http.edge import EdgeState, SegmentFunction
from vreyesam.runtime.media import render
from vreyesam.runtime.model.procedure import MaskStatistics
from vreyesam.runtime.model.segment import Segmentation, SegmentRequest, segment
from vreyesam.runtime.model.segmenter import Parameters, Segmenter
from vreyesam.runtime.settings import DecodeLimits, Settings
from vreyesam.runtime.vocabulary import STAGES

DEADLINE_S = 120.0  # the longest any awaited event may take before the test fails


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Return once `condition()` holds (checked every millisecond); AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.001)  # a poll interval, not a guess at how long anything takes


def loader_of(segmenter: Segmenter) -> SegmenterLoader:
    """A loader handing the app a model already loaded (the session's `segmenter`)."""
    return lambda: segmenter


@dataclass
class RunningApp:
    app: FastAPI
    client: TestClient
    loaded: threading.Event  # the loader returned a segmenter
    load_failed: threading.Event  # the app called on_load_failure
    failure_calls: list[None] = field(default_factory=list)  # one entry per on_load_failure call

    @property
    def edge(self) -> EdgeState:
        return self.app.state.edge  # type: ignore[no-any-return]

    def wait_ready(self, timeout_s: float = DEADLINE_S) -> None:
        """Until the app holds the model (the loader returned; the app stores its result right after)."""
        assert self.loaded.wait(timeout_s), f"the loader did not return within {timeout_s:.0f} s"
        wait_for(lambda: self.edge.model.segmenter is not None, "the app holding the loaded model", timeout_s)

    def wait_failed(self, timeout_s: float = DEADLINE_S) -> None:
        assert self.load_failed.wait(timeout_s), f"on_load_failure was not called within {timeout_s:.0f} s"


@contextmanager
def running_app(
    settings: Settings,
    load: SegmenterLoader,
    *,
    segment_function: SegmentFunction = segment,
    on_load_failure: Callable[[], None] = lambda: None,
) -> Iterator[RunningApp]:
    """The real app from `create_app`, its lifespan running (the loader started) until the block ends."""
    loaded, load_failed = threading.Event(), threading.Event()
    failure_calls: list[None] = []

    def load_and_signal() -> Segmenter:
        segmenter = load()
        loaded.set()
        return segmenter

    def failure_and_signal() -> None:
        failure_calls.append(None)
        try:
            on_load_failure()
        finally:
            load_failed.set()

    app = create_app(settings, load_and_signal, on_load_failure=failure_and_signal, segment_function=segment_function)
    with TestClient(app) as client:
        yield RunningApp(app, client, loaded, load_failed, failure_calls)


def canned_segmentation(
    _segmenter: Segmenter, _data: bytes, request: SegmentRequest, _limits: DecodeLimits
) -> Segmentation:
    """An answer without inference, for tests of what surrounds it: a 2x2 image with an empty mask."""
    png = render.encode_png(np.zeros((2, 2), np.uint8))
    timings = {stage: 0.0 for stage in STAGES}
    return Segmentation(
        width=2,
        height=2,
        parameters=Parameters(points=1, threshold=0.5, seed=0, prompts="sampled"),
        statistics=MaskStatistics(coverage_percent=0.0, area_px=0, score_mean=0.0, score_max=0.0),
        timings_ms={**timings, "total": 0.0, "host": 0.0},
        pngs={kind: png for kind in request.outputs},
    )


class GatedSegment:
    """A per-image function that counts each call as it enters and holds it until `release` is set.

    Calls then return `answer(...)` (by default `canned_segmentation`: no inference). Set `release` in a
    `finally`, so that a failing test does not leave requests held until the deadline.
    """

    def __init__(self, answer: SegmentFunction = canned_segmentation) -> None:
        self.release = threading.Event()
        self._answer = answer
        self._entered = threading.Condition()
        self.calls = 0

    def __call__(
        self, segmenter: Segmenter, data: bytes, request: SegmentRequest, limits: DecodeLimits
    ) -> Segmentation:
        with self._entered:
            self.calls += 1
            self._entered.notify_all()
        assert self.release.wait(DEADLINE_S), "the test never released the prediction"
        return self._answer(segmenter, data, request, limits)

    def wait_calls(self, count: int, timeout_s: float = DEADLINE_S) -> None:
        """Until `count` calls have entered."""
        with self._entered:
            entered = self._entered.wait_for(lambda: self.calls >= count, timeout_s)
        assert entered, f"{count} predictions did not start within {timeout_s:.0f} s (started: {self.calls})"
