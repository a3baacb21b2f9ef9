"""Fetched batches on their way from the consumer's fetch loop to the agent.

A bounded queue (the fetch loop waits while ``limit`` batches are waiting)
that Faust's flow control empties when a rebalance begins, as it empties its
own channels (and only then: :class:`SuspendedClears`). Not an
``asyncio.Queue``: emptying one of those from outside leaves a ``put`` that
was waiting for room asleep for good -- the only one who would wake it is a
``get``, and with the queue empty the agent's ``get`` waits for a ``put``.
Here emptying the queue makes room, and room wakes the fetch loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class HandOff(Generic[T]):
    """At most ``limit`` batches waiting; :meth:`clear` drops them and makes room."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._waiting: deque[T] = deque()
        self._ready = asyncio.Event()  # a batch is waiting
        self._room = asyncio.Event()  # fewer than ``limit`` are waiting
        self._room.set()

    def __len__(self) -> int:
        return len(self._waiting)

    async def put(self, batch: T) -> None:
        """Add a batch, once there is room (cancelling the wait adds nothing)."""
        while len(self._waiting) >= self.limit:
            self._room.clear()
            await self._room.wait()
        self._waiting.append(batch)
        self._ready.set()

    async def get(self) -> T:
        """The oldest waiting batch, once there is one."""
        while not self._waiting:
            self._ready.clear()
            await self._ready.wait()
        batch = self._waiting.popleft()
        self._room.set()
        return batch

    def clear(self) -> None:
        """Drop every waiting batch (a rebalance: they are fetched again after its seek)."""
        self._waiting.clear()
        self._room.set()


class FlowControl(Protocol):
    def is_active(self) -> bool: ...


class SuspendedClears:
    """``handoff`` as Faust's flow control should see it: emptied while flow is suspended.

    Faust empties every queue it manages when a rebalance begins (suspend, then
    clear) -- batches fetched before it, which the seek after it fetches again --
    but also every time flow *resumes*. At the end of a recovery that reads a
    changelog, flow has been on all along, so the input partitions, resumed just
    before, can be fetched and handed over before the resume: emptying the queue
    then drops batches whose records the seek before it will not fetch again --
    faust #596 in this worker's own hand-off, seen in its tests as records lost
    right after "Worker ready". Kept, they are processed; any the seek fetches
    again come back as repeats the agent skips (streams.continuity).
    """

    def __init__(self, handoff: HandOff[Any], flow_control: FlowControl) -> None:
        self.handoff = handoff
        self.flow_control = flow_control

    def clear(self) -> None:
        if not self.flow_control.is_active():
            self.handoff.clear()
