"""Replay logged interaction events into Kafka, keyed by user id, in time order.

The producer side of ``recoil replay`` and of the tests and benchmarks: generic
over any ``Iterable[InteractionEvent]`` (``simulator.logs.read_event_log``
reads files). One idempotent producer sends every event keyed by its user id,
so all of a user's events go to one partition in the order given, and a retried
send can neither duplicate nor reorder them.

Time order (:func:`time_ordered`): the stream workers drop an event older than
its user's newest one as ``out_of_order`` (``streams.state``), so a log that is
not in time order within a user (KuaiRand: 23,755 of 41,828 rows) loses those
events. ``recoil replay`` therefore sorts the events by timestamp before sending,
stable on ties (equal timestamps keep file order, which is also how the worker
breaks ties), and counts how many were *late* in the file: older than an
earlier event of the same user (:class:`LateCounter`). The sort holds every
event in memory; above ``max_events`` it refuses (:class:`TooLargeToSortError`)
rather than exhaust memory. ``--keep-file-order`` skips the sort and reports
the late count as the number the worker will drop.

Pacing (:class:`Pacer`): with ``speed=X`` the event with timestamp ``t``
is sent ``(t - t0) / X`` seconds after the first one (``t0``); events that
are early in the file but late in time are sent at once, never reordered.
``speed=None`` sends as fast as the broker takes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from recoil.core.events import InteractionEvent
from recoil.core.kafka_settings import KafkaSettings

IN_FLIGHT = 20_000  # sends queued before waiting for acknowledgements (bounds memory)
MAX_SORT_EVENTS = 2_000_000  # events time_ordered holds by default (~0.4 KiB each on KuaiRand)


class TooLargeToSortError(ValueError):
    """The log has more events than may be sorted in memory; the message says what to do."""


class LateCounter:
    """Counts events older than an earlier event of the same user (the worker's
    ``out_of_order`` rule, ``streams.state``); memory: one timestamp per user."""

    def __init__(self) -> None:
        self.late = 0
        self._newest: dict[str, float] = {}

    def add(self, event: InteractionEvent) -> bool:
        """Count ``event``; True if the worker would drop it as late."""
        newest = self._newest.get(event.user_id)
        if newest is not None and event.timestamp < newest:
            self.late += 1
            return True
        self._newest[event.user_id] = event.timestamp
        return False

    def counted(self, events: Iterable[InteractionEvent]) -> Iterator[InteractionEvent]:
        """``events`` unchanged, each counted as it passes."""
        for event in events:
            self.add(event)
            yield event


@dataclass(frozen=True)
class TimeOrdered:
    """Events sorted by timestamp, and how many were late in the order they came in."""

    events: list[InteractionEvent]
    reordered: int  # events older than an earlier event of their user: moved by the sort


def time_ordered(
    events: Iterable[InteractionEvent], max_events: int = MAX_SORT_EVENTS, source: str = "the log"
) -> TimeOrdered:
    """All ``events`` sorted by timestamp, stable on ties (see the module docstring).

    Every user's events end up in time order; a tie keeps the order of arrival.
    Raises :class:`TooLargeToSortError` once more than ``max_events`` arrive.
    """
    counter = LateCounter()
    held: list[InteractionEvent] = []
    for event in counter.counted(events):
        if len(held) >= max_events:
            raise TooLargeToSortError(
                f"{source} has more than {max_events:,} events, too many to sort by time in "
                f"memory. Sort it by user and time first (events of one user oldest first) "
                f"and replay with --keep-file-order, or raise --max-sort-events if the "
                f"memory allows (about 0.5 KiB per event)"
            )
        held.append(event)
    held.sort(key=lambda e: e.timestamp)  # list.sort is stable: ties keep arrival order
    return TimeOrdered(held, counter.late)


class Pacer:
    """When each event is due, in seconds after the first (the rule in the module docstring)."""

    def __init__(self, speed: float | None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._first: float | None = None
        self._due = 0.0

    def due(self, timestamp: float) -> float:
        """Never decreasing: file order is kept even where timestamps go back."""
        if self.speed is None:
            return 0.0
        if self._first is None:
            self._first = timestamp
        self._due = max(self._due, (timestamp - self._first) / self.speed)
        return self._due


def send_offsets(timestamps: Iterable[float], speed: float | None) -> list[float]:
    """:meth:`Pacer.due` for a whole sequence of timestamps."""
    pacer = Pacer(speed)
    return [pacer.due(ts) for ts in timestamps]


@dataclass(frozen=True)
class ReplayStats:
    """What a replay sent, how long it took, and how its order was fixed or left."""

    events: int
    seconds: float
    reordered: int = 0  # late in the file, put in time order before sending
    late: int = 0  # sent after a newer event of their user: the worker drops them

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


async def replay_events(
    events: Iterable[InteractionEvent],
    producer: Any,
    topic: str,
    speed: float | None = None,
    progress: Callable[[int], object] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> ReplayStats:
    """Send ``events`` with a started aiokafka producer; returns once all are acknowledged.

    ``progress(n)`` is called with the number of events the broker acknowledged since the
    last call: a watcher that reads ``sent > 0`` may then expect the topic to hold them
    (counting at enqueue showed events "sent" while every end offset was still 0).
    The stats count the events sent late for their user (``late``).
    """
    pacer = Pacer(speed)
    late = LateCounter()
    started = clock()
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    report = None if progress is None else partial(_acknowledged, progress)
    for event in events:
        wait = started + pacer.due(event.timestamp) - clock()
        if wait > 0:
            await sleep(wait)
        ack = await producer.send(topic, event.to_json(), key=event.user_id.encode())
        if report is not None:
            ack.add_done_callback(report)
        pending.append(ack)
        late.add(event)
        sent += 1
        if len(pending) >= IN_FLIGHT:
            await _settle(pending)
    await producer.flush()
    await _settle(pending)
    return ReplayStats(sent, clock() - started, late=late.late)


def _acknowledged(progress: Callable[[int], object], ack: asyncio.Future[Any]) -> None:
    """Report one send once the broker acknowledged it; a failed one raises in _settle."""
    if not ack.cancelled() and ack.exception() is None:
        progress(1)


async def _settle(pending: list[asyncio.Future[Any]]) -> None:
    """Wait for queued sends; the first failed one raises."""
    await asyncio.gather(*pending)
    pending.clear()


async def replay_to_kafka(
    events: Iterable[InteractionEvent],
    settings: KafkaSettings,
    topic: str,
    speed: float | None = None,
    progress: Callable[[int], object] | None = None,
) -> ReplayStats:
    """:func:`replay_events` through a new idempotent aiokafka producer for ``settings``."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        **settings.aiokafka(),
        enable_idempotence=True,  # retries neither duplicate nor reorder a user's events
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        return await replay_events(events, producer, topic, speed, progress)
    finally:
        await producer.stop()
