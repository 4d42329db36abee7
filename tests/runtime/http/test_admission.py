"""Admission control: at most N running, M waiting (each for at most T seconds), the rest turned away at once."""

from __future__ import annotations

import asyncio

import pytest

from vreyesam.runtime.http.admission import Admission, Overloaded


async def _hold(admission: Admission, started: asyncio.Event, release: asyncio.Event) -> str:
    async with admission.slot():
        started.set()
        await release.wait()
    return "done"


def test_slots_queue_and_refusal() -> None:
    async def scenario() -> tuple[list[str], str]:
        admission = Admission(max_running=1, max_waiting=1, timeout_s=5.0)
        release = asyncio.Event()
        first_started, second_started = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(_hold(admission, first_started, release))
        await first_started.wait()
        second = asyncio.create_task(_hold(admission, second_started, release))  # waits for the slot
        while admission.waiting < 1:  # the second task runs until it waits for the held slot
            await asyncio.sleep(0)
        assert not second_started.is_set()
        with pytest.raises(Overloaded) as refused:  # one running, one waiting: the third is turned away
            async with admission.slot():
                pass
        release.set()
        return list(await asyncio.gather(first, second)), refused.value.reason

    results, reason = asyncio.run(scenario())
    assert results == ["done", "done"]
    assert reason == "queue_full"


def test_a_wait_longer_than_the_timeout_is_refused_and_frees_its_place() -> None:
    async def scenario() -> tuple[str, bool]:
        admission = Admission(max_running=1, max_waiting=1, timeout_s=0.1)
        release, started = asyncio.Event(), asyncio.Event()
        holder = asyncio.create_task(_hold(admission, started, release))
        await started.wait()
        with pytest.raises(Overloaded) as waited:
            async with admission.slot():
                pass
        # The timed-out waiter left the queue: the next one may wait again (and also times out).
        with pytest.raises(Overloaded) as again:
            async with admission.slot():
                pass
        release.set()
        await holder
        async with admission.slot():  # all slots free again
            free = True
        return waited.value.reason + "/" + again.value.reason, free

    reasons, free = asyncio.run(scenario())
    assert reasons == "queue_timeout/queue_timeout"
    assert free


def test_a_failing_prediction_releases_its_slot() -> None:
    async def scenario() -> None:
        admission = Admission(max_running=1, max_waiting=0, timeout_s=1.0)
        with pytest.raises(RuntimeError):
            async with admission.slot():
                raise RuntimeError("inference failed")
        async with admission.slot():
            pass

    asyncio.run(scenario())
