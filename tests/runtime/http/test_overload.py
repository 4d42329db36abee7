"""Overload through the real app, in process: one prediction running, one waiting, the next turned away at
once with 503 `overloaded` and Retry-After; a wait longer than the queue timeout is turned away too; every
request that was let in is answered.

The per-image function is a `GatedSegment`: each prediction is held inside until the test releases it,
so which request is running, waiting or refused is known from events and the admission's own count,
never from how long anything takes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi.testclient import TestClient

from tests.app_harness import DEADLINE_S, GatedSegment, loader_of, running_app, wait_for
from tests.reliability.http_checks import assert_clean_error
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import Settings


def _predict(client: TestClient) -> httpx.Response:
    return client.post("/predict", content=b"image bytes", headers={"content-type": "image/png"})


def _assert_overloaded(response: httpx.Response) -> None:
    assert_clean_error(response.status_code, response.headers, response.content, 503, "overloaded")
    assert response.headers["retry-after"] == "1"


def _assert_answered(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": 2, "height": 2}  # the gate's answer went out


def test_beyond_the_queue_is_refused_at_once_and_nothing_let_in_is_lost(segmenter: Segmenter) -> None:
    gate = GatedSegment()
    # A queue timeout no wait here reaches: the only way to be refused is a full queue.
    settings = Settings(max_concurrency=1, max_queue=1, queue_timeout_s=10 * DEADLINE_S)
    with running_app(settings, loader_of(segmenter), segment_function=gate) as running, ThreadPoolExecutor(3) as pool:
        running.wait_ready()
        admission = running.edge.admission
        try:
            first = pool.submit(_predict, running.client)
            gate.wait_calls(1)  # the first is running
            second = pool.submit(_predict, running.client)
            wait_for(lambda: admission.waiting == 1, "the second request waiting for the slot")
            third = pool.submit(_predict, running.client)
            _assert_overloaded(third.result(timeout=DEADLINE_S))  # a deadline for a failure: it is at once
            # Answered while the others were held: the second still waits, nobody else got in.
            assert not first.done() and not second.done()
            assert (admission.running, admission.waiting, gate.calls) == (1, 1, 1)
        finally:
            gate.release.set()
        _assert_answered(first.result(timeout=DEADLINE_S))
        _assert_answered(second.result(timeout=DEADLINE_S))
        assert gate.calls == 2  # the refused one never reached the model
        assert (admission.running, admission.waiting) == (0, 0)
        _assert_answered(_predict(running.client))  # the slot is free again


def test_a_wait_longer_than_the_queue_timeout_is_refused(segmenter: Segmenter) -> None:
    gate = GatedSegment()
    settings = Settings(max_concurrency=1, max_queue=1, queue_timeout_s=0.05)
    with running_app(settings, loader_of(segmenter), segment_function=gate) as running, ThreadPoolExecutor(2) as pool:
        running.wait_ready()
        try:
            first = pool.submit(_predict, running.client)
            gate.wait_calls(1)
            second = pool.submit(_predict, running.client)
            _assert_overloaded(second.result(timeout=DEADLINE_S))  # after its 0.05 s behind the held one
            assert not first.done() and gate.calls == 1
            assert running.edge.admission.waiting == 0  # the timed-out request left the queue
        finally:
            gate.release.set()
        _assert_answered(first.result(timeout=DEADLINE_S))
        _assert_answered(_predict(running.client))
        assert gate.calls == 2
