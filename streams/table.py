"""The history table: a Faust table whose changelog writes the agent sends itself.

A plain ``faust.Table`` sends each change through the producer's background
buffer (``send_soon``) into the changelog partition of ``current_event()``.
Both hurt here:

* the buffer is drained later by another task, so a commit can seal the input
  offsets before the change is even queued -- in exactly-once mode the change
  then lands in the *next* transaction, and a crash between the two leaves a
  committed offset whose table change was rolled back;
* the agent works on batches (``take_events``), where ``current_event()`` is
  not the event that changed the key.

:meth:`HistoryTable.put` instead writes the local store with the changing
event as current event and awaits the changelog send (queued in the producer,
inside the input partition's transaction) with that event's partition, before
the agent lets go of the batch. Keys are user ids (UTF-8 bytes, as in the
input topic), values the bytes of :class:`streams.state.UserState`.
"""

from __future__ import annotations

import weakref
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import EventT


class HistoryTable(faust.Table):
    """Per-user state keyed by user id; changelog writes sent by :meth:`put`."""

    def on_key_set(self, key: Any, value: Any) -> None:
        # Local bookkeeping only: the changelog record is sent by put().
        self._sensor_on_set(self, key, value)

    async def put(self, key: bytes, value: bytes, event: EventT) -> None:
        """Store ``value`` for ``key`` and queue its changelog record in ``event``'s partition."""
        token = _current_event.set(weakref.ref(event))
        try:
            self[key] = value
        finally:
            _current_event.reset(token)
        await self.changelog_topic.send(
            key=key,
            value=value,
            partition=event.message.partition,
            callback=self._on_changelog_sent,
        )
