"""Every private Faust name recoil touches, each with the reason it is needed.

Read from faust-streaming 0.15.3 (``faust/streams.py``, ``faust/app/base.py``,
``faust/transport/consumer.py``, ``faust/transport/drivers/aiokafka.py``), with
mode-streaming 0.7.1 and aiokafka 0.14.0. Nothing else in streams/ reaches an
underscored Faust, mode or aiokafka name: it goes through the classes here,
whose names are public. On a Faust upgrade, re-read the files above for each
name below. A renamed attribute fails here; a renamed hook would silently
bypass its override, so tests/unit/test_streams_faust_internals.py checks that
each hook and each attribute still exists in Faust.

What and why:

* ``faust.streams._current_event`` (a ContextVar of a weakref): the event a
  table reads and writes for. Faust sets it per event while iterating a stream;
  the agent takes batches (whole fetches, or ``take_events``), where it is not
  the event at hand. Faust has no public setter. See :class:`CurrentEvent`.
* ``Consumer._committed_offset``: the next offset to read as last committed, per
  partition. The agent's continuity check and the lag gauge start there after a
  rebalance; the strict commit rule starts there. No public reader exists.
* ``Consumer._new_offset``: how far a partition may be committed. Faust's rule
  commits past offsets still in flight (faust #606) and never past an offset
  that was fetched and dropped (faust #596); recoil replaces it
  (:meth:`ConsumerAdapter.next_commit_offset`), which needs the state it reads:
  ``_acked`` / ``_acked_index`` (acked offsets, list and set, kept in step),
  ``_unacked_messages`` (in flight) and ``_gap`` (jumps between fetched offsets).
* ``Consumer._add_gap``: Faust records every jump between fetched offsets as a
  gap to commit through, which is how #606 skips a real record; with the offset
  guard the agent checks jumps against the broker instead.
* ``Consumer._read_offset``: the offset below which Faust's fetch loop drops
  records; capped at what the agent still needs after a re-read (#596 again).
* ``Consumer._commit_tps``: the one place every commit passes, where recoil's
  batch barrier is held so no commit falls inside a batch.
* ``Consumer._commit_fut``: how Faust marks a commit as running, so that other
  commits wait for it; recoil's never-skipped commit marks itself the same way.
* ``Consumer._new_consumer_thread`` and ``AIOKafkaConsumerThread._highwaters``
  / ``_ensure_consumer``: Faust reads a changelog's end in exactly-once mode from
  the cached last stable offset, unknown (-1) for a partition not fetched yet,
  and recovery then fails with ``ConsistencyError``; recoil asks the broker.
* ``App._new_transport``: the only way to give an app its own consumer class.
* ``Producer._transaction_producers`` / ``Producer._ensure_producer``: the aiokafka
  producer of a transaction (or the one producer without transactions). Faust's
  ``send`` wraps every record in an ``asyncio.Lock`` (against a commit of the
  same transaction, which the batch barrier already excludes), a sensor call and
  header handling, and leaves the partition to aiokafka's pure-Python murmur2;
  the agent sends through aiokafka directly (:func:`kafka_producer`).
* ``rocksdb.Store._db_for_partition`` / ``_key_index``: a table write goes through
  Faust's mapping chain (callbacks, the serializer registry, the current-event
  lookup) before the RocksDB put, about four times the put's own cost; with
  raw bytes keys and values :func:`put_local` writes the partition's database
  directly and keeps Faust's key-to-partition index as its store would.
* ``Consumer._drain_messages`` (and the ``_stopped`` events of the consumer and
  its fetcher, which end it; ``_commit_every`` / ``_n_acked``, its commit
  trigger; ``_wait_next_records``, ``_buffered_partitions`` and ``_to_message``,
  which its ``getmany`` uses): Faust's fetch loop, which hands every record to
  its topic's channel through ``wait_first`` -- four tasks and an
  ``asyncio.wait`` per record, then stream iteration per record. For one topic
  recoil hands each fetch over whole instead
  (:meth:`ConsumerAdapter.drain_in_batches`); it tracks those records itself,
  in ``_unacked_messages`` as the stream would.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Mapping, MutableMapping
from contextvars import Token
from types import TracebackType
from typing import Any, Protocol, cast

import faust
from faust.exceptions import ProducerSendError
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import _current_event
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, EventT, Message


class CurrentEvent:
    """``with CurrentEvent(event):`` makes ``event`` Faust's current event inside the block.

    A table reads and writes the store partition of the current event.
    """

    __slots__ = ("event", "token")

    def __init__(self, event: SourceEvent) -> None:
        self.event = event
        self.token: Token[Any] | None = None

    def __enter__(self) -> None:
        # A FetchedEvent carries all a table reads of an event (its message).
        self.token = _current_event.set(weakref.ref(cast(EventT, self.event)))

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.token is not None
        _current_event.reset(self.token)


class SourceEvent(Protocol):
    """What recoil reads of an input event: its Kafka record (a Faust event has more)."""

    @property
    def message(self) -> Message: ...


class FetchedEvent:
    """An input record handed over in a whole fetch: the one field a table reads of an event."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Message) -> None:
        self.message = message


def kafka_producer(producer: Any, transactional_id: str | None) -> Any:
    """The aiokafka producer that Faust's ``producer.send`` would use for this transaction."""
    if transactional_id is None:
        return producer._ensure_producer()
    found = producer._transaction_producers.get(transactional_id)
    if found is None:  # the partition was revoked: Faust's send fails the same way
        raise ProducerSendError(f"No transaction producer found for : {transactional_id}")
    return found


def put_local(table: Any, event: SourceEvent, key: bytes, value: bytes) -> None:
    """``table[key] = value`` in the store partition of ``event``, for a raw-bytes table.

    RocksDB: exactly what the store's own write does after its lookups (the
    table's changelog is sent by the caller). Any other store: through the table.
    """
    store = table.data
    if isinstance(store, RocksDBStore):
        partition = event.message.partition
        store._key_index[key] = partition  # how reads without an event find the key
        store._db_for_partition(partition).put(key, value)
        return
    with CurrentEvent(event):
        table[key] = value


class AppAdapter(faust.App):
    """A Faust app whose consumer transport a subclass chooses (:meth:`consumer_transport`)."""

    def _new_transport(self) -> Any:
        return self.consumer_transport()

    def consumer_transport(self) -> Any:
        """The transport that creates this app's consumer (Faust's by default)."""
        return super()._new_transport()


class ListOffsetsConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, asking the broker for the last stable offset.

    In exactly-once mode Faust takes a changelog's high-water mark from the
    consumer's cached ``last_stable_offset``, which is unknown (-1) for a
    partition not fetched yet -- e.g. one that comes back to this worker after
    another worker left. Recovery then sees a persisted offset above "-1" and
    crashes with ``ConsistencyError``. A ListOffsets request made with the
    consumer's read_committed isolation returns the real last stable offset.
    """

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        consumer = self._ensure_consumer()
        offsets: Mapping[TP, int] = await consumer.end_offsets(partitions)
        return offsets


class ConsumerAdapter(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with its private hooks and state under public names.

    Faust calls the private hooks; they call the public ones here, which keep
    Faust's behaviour until a subclass overrides them.
    """

    def _new_offset(self, tp: TP) -> int | None:
        return self.next_commit_offset(tp)

    def next_commit_offset(self, tp: TP) -> int | None:
        """The offset to commit for ``tp`` now, or None (Faust's rule by default)."""
        offset: int | None = super()._new_offset(tp)
        return offset

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        await self.on_fetch_gap(tp, offset_from, offset_to)

    async def on_fetch_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust fetched ``offset_to`` right after ``offset_from`` (records Faust's gap)."""
        await super()._add_gap(tp, offset_from, offset_to)

    async def _commit_tps(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
        return await self.commit_partitions(tps, start_new_transaction)

    async def commit_partitions(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
        """Commit what is committable of ``tps`` (every commit of Faust passes here)."""
        done: bool = await super()._commit_tps(tps, start_new_transaction)
        return done

    async def _drain_messages(self, fetcher: Any) -> None:
        topic, size = self.batch_topic()
        if topic is None:
            await super()._drain_messages(fetcher)
        else:
            await self.drain_in_batches(fetcher, topic, size)

    def batch_topic(self) -> tuple[str | None, int]:
        """The topic whose fetches go to :meth:`deliver_batch` whole, and the largest batch."""
        return None, 1

    async def deliver_batch(self, messages: list[Message]) -> None:
        """Hand one batch of ``batch_topic`` records (in partition order) to the agent."""
        raise NotImplementedError

    async def drain_in_batches(self, fetcher: Any, topic: str, size: int) -> None:
        """Faust's ``_drain_messages``, handing each fetch of ``topic`` over in batches.

        Every other topic (the changelog during recovery) goes through Faust's
        per-record callback as before. What Faust does per record is kept per
        record -- the read-offset check that drops records already read, the
        gap it notes between fetched offsets -- and a batch is only counted as
        read (its read offsets advanced) once it is handed over: when a
        rebalance suspends the flow first, it is fetched again after the seek.
        """
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        acks_enabled_for = self.app.topics.acks_enabled_for
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                read = self._read_offset
                batch: list[Message] = []
                await self.sleep(0)
                if self.should_stop:
                    break
                for tp, messages in (await self.fetch_messages(timeout=1.0)).items():
                    batched = tp.topic == topic
                    r_offset = read[tp]
                    for message in messages:
                        offset = message.offset
                        if r_offset is not None and offset < r_offset:
                            continue  # read before (Faust drops these the same way)
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(tp.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if batched:
                            batch.append(message)
                            r_offset = offset
                            continue
                        await self._commit_if_due()
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                        read[tp] = offset
                        r_offset = read[tp]
                await self._commit_if_due()
                for start in range(0, len(batch), size):
                    chunk = batch[start : start + size]
                    put = self.deliver_batch(chunk)
                    handed = await self.wait_first(put, self.suspend_flow.wait())
                    if put not in handed.done:
                        break  # suspended (a rebalance): re-fetched after its seek
                    for message in chunk:
                        read[message.tp] = message.offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _commit_if_due(self) -> None:
        """Faust's ``broker_commit_every``: commit once that many records were acked."""
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    async def fetch_messages(self, timeout: float) -> dict[TP, list[Message]]:
        """One fetch, as Faust's ``getmany`` makes it, partition by partition.

        The same checks (flow active, same consumer generation, an active or
        buffered partition), made once per partition rather than per record:
        nothing can change them between two records, as nothing awaits there.
        Faust's version interleaves partitions record by record and looks up a
        partition's high-water mark for every record.
        """
        records, active = await self._wait_next_records(timeout)
        generation = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return {}
        if not self.flow_active:  # Faust: seek back to the committed offsets
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return {}
        fetched: dict[TP, list[Message]] = {}
        for tp, found in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break
            if active is None or tp in active or tp in self._buffered_partitions:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                fetched[tp] = [self._to_message(tp, record) for record in found]
        return fetched

    def track(self, messages: list[Message]) -> None:
        """Mark handed-over records in flight, as Faust's stream does when it takes one."""
        add = self._unacked_messages.add
        for message in messages:
            message.tracked = True
            add(message)

    def _new_consumer_thread(self) -> ListOffsetsConsumerThread:
        return ListOffsetsConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def committed_offsets(self) -> MutableMapping[TP, int | None]:
        """Per partition, the next offset to read as last committed (None: none yet)."""
        offsets: MutableMapping[TP, int | None] = self._committed_offset
        return offsets

    @property
    def acked_offsets(self) -> Mapping[TP, list[int]]:
        """Per partition, the offsets acked and not yet committed."""
        acked: Mapping[TP, list[int]] = self._acked
        return acked

    def acked(self, tp: TP) -> list[int]:
        """The offsets of ``tp`` acked and not yet committed (Faust's own list)."""
        acked: list[int] = self._acked[tp]
        return acked

    def keep_acked(self, tp: TP, kept: list[int]) -> None:
        """Forget the acked offsets of ``tp`` that are not in ``kept`` (list and index)."""
        self._acked[tp][:] = kept
        self._acked_index[tp] = set(kept)

    def in_flight(self, tp: TP) -> list[int]:
        """Offsets of ``tp`` delivered to the agent and not acked yet."""
        return [m.offset for m in list(self._unacked_messages) if m.tp == tp and not m.acked]

    def fetch_gaps(self, tp: TP) -> Any:
        """Faust's gaps of ``tp`` (an ``intervaltree.IntervalTree``) between fetched offsets."""
        return self._gap[tp]

    def replace_read_offsets(self, offsets: MutableMapping[TP, int | None]) -> None:
        """Replace Faust's per-partition read offsets (records below one are dropped)."""
        self._read_offset = offsets

    async def commit_as_running(self, start_new_transaction: bool) -> None:
        """``force_commit``, marked as the running commit: Faust's commits wait for it."""
        self._commit_fut = asyncio.Future(loop=self.loop)
        try:
            await self.force_commit(start_new_transaction=start_new_transaction)
        finally:
            fut, self._commit_fut = self._commit_fut, None
            fut.set_result(None)
