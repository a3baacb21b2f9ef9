"""Replay pacing (due times scaled by speed) and time order (sorted, late events counted)."""

from __future__ import annotations

import asyncio

import pytest

from recoil.core.events import InteractionEvent
from streams.replay import (
    LateCounter,
    Pacer,
    TooLargeToSortError,
    replay_events,
    send_offsets,
    time_ordered,
)


def test_speed_scales_inter_event_time() -> None:
    assert send_offsets([100.0, 101.0, 103.0, 103.0], speed=2.0) == [0.0, 0.5, 1.5, 1.5]


def test_events_late_in_time_but_early_in_the_file_go_at_once() -> None:
    assert send_offsets([100.0, 110.0, 105.0, 112.0], speed=1.0) == [0.0, 10.0, 10.0, 12.0]


def test_as_fast_as_possible_is_always_due() -> None:
    assert send_offsets([5.0, 1e9, 3.0], speed=None) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_speed_must_be_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be > 0"):
        Pacer(speed)


def _event(n: int, user: str, ts: float) -> InteractionEvent:
    return InteractionEvent(
        event_id=f"e{n}", user_id=user, item_id=f"i{n}", creator_id="c", cluster_id=None,
        timestamp=ts, surface="log", dwell_seconds=1.0, item_duration_seconds=10.0,
        liked=True, disliked=False, dismissed=False,
    )  # fmt: skip


def test_time_ordered_sorts_every_user_by_time_stable_on_ties() -> None:
    events = [
        _event(0, "a", 5.0), _event(1, "b", 3.0), _event(2, "a", 1.0), _event(3, "a", 5.0),
        _event(4, "b", 3.0), _event(5, "a", 2.0), _event(6, "b", 1.0),
    ]  # fmt: skip
    ordered = time_ordered(events)
    assert [e.event_id for e in ordered.events] == ["e2", "e6", "e5", "e1", "e4", "e0", "e3"]
    assert ordered.reordered == 3  # e2 and e5 (after a's 5.0), e6 (after b's 3.0)
    late = LateCounter()
    assert [late.add(e) for e in ordered.events] == [False] * 7 and late.late == 0


def test_late_counter_follows_the_workers_rule() -> None:
    late = LateCounter()
    flags = [late.add(e) for e in (_event(0, "a", 5.0), _event(1, "a", 5.0),
                                   _event(2, "a", 4.0), _event(3, "b", 1.0),
                                   _event(4, "a", 4.5), _event(5, "a", 6.0))]  # fmt: skip
    assert flags == [False, False, True, False, True, False]  # equal time is in order
    assert late.late == 2


def test_time_ordered_refuses_more_than_it_may_hold() -> None:
    events = (_event(n, "a", float(n)) for n in range(10))
    with pytest.raises(TooLargeToSortError, match=r"big\.tsv has more than 9 events"):
        time_ordered(events, max_events=9, source="big.tsv")
    assert len(time_ordered((_event(n, "a", 0.0) for n in range(9)), max_events=9).events) == 9


def test_replay_reports_events_sent_late() -> None:
    class Producer:
        async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        async def flush(self) -> None:
            return None

    events = [_event(0, "a", 5.0), _event(1, "a", 1.0), _event(2, "b", 1.0)]
    stats = asyncio.run(replay_events(events, Producer(), "t"))
    assert (stats.events, stats.late, stats.reordered) == (3, 1, 0)


def test_replay_progress_counts_acknowledged_events_only() -> None:
    acked: list[int] = []

    class Producer:
        def __init__(self) -> None:
            self.queued: list[asyncio.Future[None]] = []
            self.reported_before_acks = -1

        async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
            self.queued.append(asyncio.get_running_loop().create_future())
            return self.queued[-1]

        async def flush(self) -> None:
            await asyncio.sleep(0)  # let any callback that was due run first
            self.reported_before_acks = sum(acked)
            for ack in self.queued:
                ack.set_result(None)

    producer = Producer()
    events = [_event(n, "a", float(n)) for n in range(3)]
    stats = asyncio.run(replay_events(events, producer, "t", progress=acked.append))
    assert producer.reported_before_acks == 0  # queued is not sent
    assert sum(acked) == stats.events == 3  # each one reported once the broker had it
