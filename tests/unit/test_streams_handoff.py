"""streams.handoff: the fetch loop's queue to the agent, emptied at rebalances."""

from __future__ import annotations

import asyncio

import pytest
from mode.utils.queues import FlowControlEvent

from streams.handoff import HandOff, SuspendedClears


def test_batches_come_out_in_order_and_a_full_queue_makes_the_fetch_loop_wait() -> None:
    async def scenario() -> None:
        handoff: HandOff[int] = HandOff(limit=2)
        await handoff.put(1)
        await handoff.put(2)
        third = asyncio.ensure_future(handoff.put(3))
        await asyncio.sleep(0.01)
        assert not third.done()  # no room
        assert await handoff.get() == 1
        await asyncio.wait_for(third, 1.0)  # room again
        assert [await handoff.get(), await handoff.get()] == [2, 3]

    asyncio.run(scenario())


def test_emptying_a_full_queue_wakes_the_waiting_put_and_the_agent_gets_the_next_batch() -> None:
    """The deadlock an asyncio.Queue emptied from outside would have: a put asleep for
    room that only a get would wake, and a get asleep for a put."""

    async def scenario() -> None:
        flow = FlowControlEvent(initially_suspended=False)
        handoff: HandOff[str] = HandOff(limit=2)
        clears = SuspendedClears(handoff, flow)
        flow.manage_queue(clears)  # type: ignore[arg-type]  # anything with clear()
        await handoff.put("stale-1")
        await handoff.put("stale-2")
        blocked = asyncio.ensure_future(handoff.put("stale-3"))
        await asyncio.sleep(0.01)
        assert not blocked.done()
        flow.suspend()
        flow.clear()  # Faust empties its queues here (a rebalance begins)
        flow.resume()
        await asyncio.wait_for(blocked, 1.0)  # woken: the room it waited for exists
        await handoff.put("fresh")
        assert await asyncio.wait_for(handoff.get(), 1.0) == "stale-3"
        assert await asyncio.wait_for(handoff.get(), 1.0) == "fresh"
        assert len(handoff) == 0

    asyncio.run(scenario())


def test_a_cancelled_put_adds_nothing() -> None:
    async def scenario() -> None:
        handoff: HandOff[int] = HandOff(limit=1)
        await handoff.put(1)
        waiting = asyncio.ensure_future(handoff.put(2))
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert await handoff.get() == 1
        assert len(handoff) == 0

    asyncio.run(scenario())


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="limit must be >= 1"):
        HandOff(limit=0)


def test_resuming_flow_keeps_what_was_handed_over() -> None:
    """Faust's flow control also empties its queues when flow resumes, at the end of a
    recovery, after the input was resumed and sought: batches handed over in between
    would be lost for good. Only a suspended flow's clear empties the hand-off."""

    async def scenario() -> None:
        flow = FlowControlEvent(initially_suspended=True)
        handoff: HandOff[str] = HandOff(limit=2)
        clears = SuspendedClears(handoff, flow)
        flow.manage_queue(clears)  # type: ignore[arg-type]
        flow.resume()
        await handoff.put("fetched before the resume")
        flow.resume()  # again, as the end of a recovery does
        assert len(handoff) == 1
        flow.suspend()  # a rebalance begins
        flow.clear()
        assert len(handoff) == 0

    asyncio.run(scenario())
