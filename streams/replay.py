"""Replay logged interaction events into Kafka, keyed by user id, in order.

The producer side of ``recoil replay`` and of the tests and benchmarks: generic
over any ``Iterable[InteractionEvent]`` (``simulator.logs.read_event_log``
reads files). One idempotent producer sends every event keyed by its user id,
so all of a user's events go to one partition in file order, and a retried
send can neither duplicate nor reorder them.

Pacing (:class:`Pacer`): with ``speed=X`` the event with timestamp ``t``
is sent ``(t - t0) / X`` seconds after the first one (``t0``); events that
are early in the file but late in time are sent at once, never reordered.
``speed=None`` sends as fast as the broker takes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from recoil.events import InteractionEvent
from recoil.kafka_settings import KafkaSettings

IN_FLIGHT = 20_000  # sends queued before waiting for acknowledgements (bounds memory)


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
    """What a replay sent, and how long it took."""

    events: int
    seconds: float

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

    ``progress(n)`` is called with the number of events sent since the last call.
    """
    pacer = Pacer(speed)
    started = clock()
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    for event in events:
        wait = started + pacer.due(event.timestamp) - clock()
        if wait > 0:
            await sleep(wait)
        pending.append(await producer.send(topic, event.to_json(), key=event.user_id.encode()))
        sent += 1
        if progress is not None:
            progress(1)
        if len(pending) >= IN_FLIGHT:
            await _settle(pending)
    await producer.flush()
    await _settle(pending)
    return ReplayStats(sent, clock() - started)


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
