"""The history table: a Faust table whose changelog writes the agent sends itself.

A plain ``faust.Table`` sends each change through the producer's background
buffer (``send_soon``) into the changelog partition of ``current_event()``,
in exactly-once mode under the transaction Faust derives from that partition.
None of that fits here:

* the buffer is drained later by another task, so a commit can seal the input
  offsets before the change is even queued -- the change then lands in the
  *next* transaction, and a crash between the two leaves a committed offset
  whose table change was rolled back;
* the agent works on batches, where ``current_event()`` is not the event that
  changed the key.

:meth:`HistoryTable.put` writes the local store partition of the changing
event (:func:`streams.faust_internals.put_local`), then queues the changelog
record in that event's partition, under the same transaction as the batch's
examples (the input partition's), before the agent lets go of the batch. Keys
are user ids (UTF-8 bytes, as in the input topic), values the bytes of
:class:`streams.state.UserState`.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import faust
from faust.types import TP

from streams.faust_internals import SourceEvent, kafka_producer, put_local


class HistoryTable(faust.Table):
    """Per-user state keyed by user id; changelog writes sent by :meth:`put`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written: dict[TP, int] = {}  # changelog partition -> last offset written

    def on_key_set(self, key: Any, value: Any) -> None:
        # Local bookkeeping only: the changelog record is sent by put().
        self.app.sensors.on_table_set(self, key, value)

    async def put(
        self, key: bytes, value: bytes, event: SourceEvent, transactional_id: str | None
    ) -> asyncio.Future[Any]:
        """Store ``value`` for ``key``; queue its changelog record; return the delivery."""
        put_local(self, event, key, value)
        producer = kafka_producer(self.app.producer, transactional_id)
        delivery = await producer.send(
            self.changelog_topic.get_topic_name(),
            value,
            key=key,
            partition=event.message.partition,
        )
        future = cast("asyncio.Future[Any]", delivery)
        future.add_done_callback(self._on_delivered)
        return future

    def _on_delivered(self, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            return  # the processor sees the failure on its own futures
        metadata = delivery.result()
        tp = TP(metadata.topic, metadata.partition)
        self.written[tp] = max(self.written.get(tp, -1), metadata.offset)
        if not self.app.in_transaction:
            # At-least-once: the record is in the log; restart reading after it.
            self.data.set_persisted_offset(tp, metadata.offset)
