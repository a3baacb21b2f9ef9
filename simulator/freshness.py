"""Freshness, measured end to end: how soon an event changes what the system does.

(a) *Feature freshness*: a dislike event is produced to ``interactions``; the
clock stops when ``GET /recommend/{user_id}`` answers from a history whose last
event is that one (``last_event_timestamp``), i.e. the dislike flag is in the
model's input. Polled every ``poll_seconds``.

(b) *Snapshot freshness*: the same event's training example is found on
``training-examples`` (its partition and offset); the clock stops at the
``created_at`` of the first snapshot whose consumed offsets pass it
(``GET /snapshot``).

Each measurement uses a fresh probe user, so nothing else touches its history.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from recoil.core.checks import finite_number
from recoil.core.events import InteractionEvent
from simulator.answers import json_object


@dataclass(frozen=True)
class FreshnessSample:
    feature_seconds: float  # produce -> GET /recommend reflects the dislike
    event_id: str
    produced_at: float  # wall clock when the event was sent
    partition: int | None = None  # of its training example, once found
    offset: int | None = None


def probe_event(
    user_id: str, item_id: str, creator_id: str, cluster_id: str | None
) -> InteractionEvent:
    """A long-dwell dislike by a fresh user: labelled (dislike) and flagged in the input."""
    now = round(time.time(), 3)
    return InteractionEvent(
        event_id=f"{user_id}-0", user_id=user_id, item_id=item_id, creator_id=creator_id,
        cluster_id=cluster_id, timestamp=now, surface="freshness-probe", dwell_seconds=30.0,
        item_duration_seconds=30.0, liked=False, disliked=True, dismissed=False,
    )  # fmt: skip


async def feature_freshness(
    session: aiohttp.ClientSession,
    producer: Any,
    topic: str,
    serving_url: str,
    item: tuple[str, str, str | None],
    timeout: float = 30.0,
    poll_seconds: float = 0.002,
) -> FreshnessSample:
    """Produce one dislike for a new user and time until serving reflects it."""
    user_id = f"freshness-{uuid.uuid4().hex[:10]}"
    event = probe_event(user_id, *item)
    url = f"{serving_url}/recommend/{user_id}?k=1"
    produced_at = time.time()
    start = time.perf_counter()
    await producer.send_and_wait(topic, key=user_id.encode(), value=event.to_json())
    deadline = start + timeout
    while time.perf_counter() < deadline:
        async with session.get(url) as resp:
            # a bad answer (not serving's) is "not yet": the sample times out, and says so
            body = (await json_object(resp))[0] if resp.status == 200 else None
            if body is not None and body.get("last_event_timestamp") == event.timestamp:
                return FreshnessSample(time.perf_counter() - start, event.event_id, produced_at)
        await asyncio.sleep(poll_seconds)
    raise TimeoutError(f"serving did not reflect {event.event_id} within {timeout}s")


def example_event_id(value: bytes | None) -> str | None:
    """The ``event_id`` of a training example's record; None for a record that is not one
    (the topic is open to any producer: one bad record must not stop the search)."""
    try:
        example = json.loads(value) if value is not None else None
    except ValueError:
        return None
    event_id = example.get("event_id") if isinstance(example, dict) else None
    return event_id if isinstance(event_id, str) else None


async def find_example(
    consumer: Any, event_ids: set[str], timeout: float
) -> dict[str, tuple[int, int]]:
    """Partition and offset of the training examples of ``event_ids`` (a started consumer)."""
    found: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout
    while event_ids - found.keys() and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        for tp, records in batches.items():
            for record in records:
                event_id = example_event_id(record.value)
                if event_id in event_ids:
                    found[event_id] = (tp.partition, record.offset)
    return found


def snapshot_time(body: dict[str, Any] | None, partition: int, offset: int) -> float | None:
    """``created_at`` of the snapshot ``GET /snapshot`` answered (``body``) if it was trained
    past ``offset`` of ``partition``; None if not, or if the answer is not serving's."""
    if body is None:
        return None
    offsets, created_at = body.get("offsets"), finite_number(body.get("created_at"))
    passed = finite_number(offsets.get(str(partition))) if isinstance(offsets, dict) else None
    if passed is None or created_at is None or passed <= offset:
        return None
    return created_at


async def snapshot_freshness(
    session: aiohttp.ClientSession,
    serving_url: str,
    produced_at: float,
    example_at: tuple[int, int],
    timeout: float = 300.0,
    poll_seconds: float = 0.5,
) -> float:
    """Seconds from the event's production to the first snapshot trained on its example,
    which is at ``example_at`` (partition, offset; what ``find_example`` gives)."""
    partition, offset = example_at
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with session.get(f"{serving_url}/snapshot") as resp:
            body = (await json_object(resp))[0] if resp.status == 200 else None
            created_at = snapshot_time(body, partition, offset)
            if created_at is not None:
                return created_at - produced_at
        await asyncio.sleep(poll_seconds)
    raise TimeoutError(
        f"no snapshot trained on partition {partition} offset {offset} in {timeout}s"
    )
