"""recoil's Faust consumer: strict commits, a batch barrier, hole repair, true LSOs.

Faust lets an app bring its own transport; :class:`RecoilTransport` is Faust's
aiokafka transport with :class:`RecoilConsumer`, which changes six things
(the sixth, :class:`streams.faust_internals.ListOffsetsConsumerThread`, keeps
recovery from crashing when a partition returns after a rebalance). Faust's
private hooks and state are reached through
:class:`streams.faust_internals.ConsumerAdapter`, under public names.

1. **Strict commits** (faust #606). ``next_commit_offset`` uses
   :func:`streams.offsets.committable_offset`: never past an offset still in
   flight, never past a hole nobody has explained.
2. **Hole repair** (faust #596). :meth:`RecoilConsumer.repair_holes` asks the
   broker what sits at each hole that has persisted for ``hole_grace`` seconds.
   No record there (a transaction marker, a compacted or aborted record):
   commits go through it. A real record: it was fetched and dropped before
   reaching the agent, so the partition is re-read from the hole; the per-user
   dedupe makes the re-read events ``duplicate`` outcomes, so nothing is
   emitted twice and the dropped event is finally processed.
3. **A final commit that happens.** Faust skips the commit of a rebalance
   when a periodic one is running; see :meth:`RecoilConsumer.commit_and_end_transactions`.
4. **Whole fetches** (``fetch_batches``, the default). Faust hands the agent one
   record at a time: a ``wait_first`` of four tasks per record in its fetch
   loop, then stream iteration, acking and sensors per record -- as much CPU as
   everything the agent itself does. Here each fetch of the input topic goes
   to the agent whole (:meth:`RecoilConsumer.next_batch`, at most
   ``batch_size`` records at a time), through a queue that Faust's flow
   control empties at a rebalance as it empties its own channels
   (:class:`streams.handoff.HandOff`); a batch of
   an older consumer generation is dropped, never processed. The agent acks
   the batch after processing it (:meth:`RecoilConsumer.ack_batch`).
5. **Batch barrier.** Commits wait for :attr:`RecoilConsumer.barrier`, which the
   agent holds while it queues one batch's sends. In exactly-once mode a Kafka
   transaction therefore always holds all of a batch's output and table
   writes or none of them; without it, a commit could seal a transaction
   holding an event's example but not the table write that marks it seen, and
   a crash right after would emit that example twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from streams.faust_internals import ConsumerAdapter, FetchedEvent
from streams.handoff import HandOff, SuspendedClears
from streams.offsets import committable_offset
from streams.supervisor import EXIT_UNCOMMITTABLE

log = logging.getLogger(__name__)


@dataclass
class Hole:
    """An offset that blocks commits: first seen at ``since`` (monotonic seconds)."""

    offset: int
    since: float


class BrokerView:
    """What the broker says, asked from the worker's own event loop.

    A group-less aiokafka consumer with the worker's isolation level (so it sees
    exactly what the worker's consumer would) and an admin client. Never goes
    through Faust's consumer thread: during a rebalance that thread is busy
    running the very callback that asks.
    """

    def __init__(self, kafka_kwargs: Mapping[str, Any], isolation_level: str) -> None:
        self._kwargs = dict(kafka_kwargs)
        self._isolation_level = isolation_level
        self._consumer: Any = None
        self._admin: Any = None
        # One probe at a time: a probe re-assigns the shared reader, which would empty
        # another probe's fetch (the agent and the once-a-second checks both ask).
        self._probing = asyncio.Lock()
        self._starting = asyncio.Lock()

    async def _reader(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        async with self._starting:  # a second caller waits for the one being started
            if self._consumer is None:
                consumer = AIOKafkaConsumer(
                    **self._kwargs,
                    group_id=None,
                    enable_auto_commit=False,
                    isolation_level=self._isolation_level,
                )
                await consumer.start()
                self._consumer = consumer
        return self._consumer

    async def first_offset_from(self, tp: TP, offset: int, timeout: float = 5.0) -> int | None:
        """The offset of the first record the worker could read at or after ``offset``."""
        from aiokafka import TopicPartition

        async with self._probing:
            consumer = await self._reader()
            ktp = TopicPartition(tp.topic, tp.partition)
            consumer.assign([ktp])
            consumer.seek(ktp, offset)
            records = await consumer.getmany(ktp, timeout_ms=int(timeout * 1000), max_records=1)
        found = records.get(ktp) or []
        return int(found[0].offset) if found else None

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Last stable offsets (read_committed) or high-water marks (read_uncommitted)."""
        from aiokafka import TopicPartition

        consumer = await self._reader()
        ends = await consumer.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
        return {TP(k.topic, k.partition): int(v) for k, v in ends.items()}

    async def beginning_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The first offset each partition still holds (retention moves it up)."""
        from aiokafka import TopicPartition

        consumer = await self._reader()
        starts = await consumer.beginning_offsets(
            [TopicPartition(tp.topic, tp.partition) for tp in tps]
        )
        return {TP(k.topic, k.partition): int(v) for k, v in starts.items()}

    async def committed(self, group: str, tps: Iterable[TP]) -> dict[TP, int]:
        """The group's committed offsets as materialised now (-1: none)."""
        from aiokafka import TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            self._admin = AIOKafkaAdminClient(**self._kwargs)
            await self._admin.start()
        found = await self._admin.list_consumer_group_offsets(
            group, partitions=[TopicPartition(tp.topic, tp.partition) for tp in tps]
        )
        return {TP(k.topic, k.partition): int(v.offset) for k, v in found.items()}

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None


class ReadOffsets(defaultdict[TP, "int | None"]):
    """Faust's per-partition read offsets, never above what the agent still needs.

    Faust's fetch loop drops every record below the last offset it read. After
    a seek back (a re-read) the records it had already fetched past the seek
    still move that offset up, and the re-fetched records -- the ones the agent
    is waiting for -- are then dropped too: the #596 race again. Here the read
    offset Faust sees is capped at the next offset the agent needs.
    """

    def __init__(self, needed: Mapping[TP, int]) -> None:
        super().__init__(lambda: None)
        self.needed = needed

    def __getitem__(self, tp: TP) -> int | None:
        stored = super().__getitem__(tp)
        need = self.needed.get(tp)
        if stored is None or need is None:
            return stored
        return min(stored, need)


class RecoilConsumer(ConsumerAdapter):
    """Faust's aiokafka consumer with strict commits and hole repair (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Settings travel on the app (streams.app.StreamsApp): Faust builds the consumer.
        self.offset_guard: bool = getattr(self.app, "offset_guard", True)
        self.hole_grace: float = getattr(self.app, "hole_grace", 2.0)
        self.broker_view: BrokerView = self.app.broker_view  # type: ignore[attr-defined]
        self.barrier = asyncio.Lock()
        self.holes: dict[TP, Hole] = {}
        self.absent: dict[TP, set[int]] = {}
        self.repaired = 0  # partitions re-read from a dropped record (for logs and tests)
        self.rereading: dict[TP, int] = {}  # partition -> lost offset the agent re-reads from
        self.needed: dict[TP, int] = {}  # partition -> next offset the agent needs
        if self.offset_guard:
            self.replace_read_offsets(ReadOffsets(self.needed))
        self.fetch_topic: str | None = getattr(self.app, "fetch_topic", None)
        self.fetch_batch_size: int = getattr(self.app, "fetch_batch_size", 500)
        # Two batches: the next fetch is decoded while the agent works on one. Faust's
        # flow control empties it at every rebalance, with its own channels.
        self.fetched: HandOff[list[Message]] = HandOff(limit=2)
        # Emptied when a rebalance begins, never when flow resumes (SuspendedClears). The
        # flow control holds its queues weakly: the consumer keeps the adapter alive.
        self.fetched_clears = SuspendedClears(self.fetched, self.app.flow_control)
        self.app.flow_control.manage_queue(cast(Any, self.fetched_clears))  # only clear()

    def batch_topic(self) -> tuple[str | None, int]:
        return self.fetch_topic, self.fetch_batch_size

    async def deliver_batch(self, messages: list[Message]) -> None:
        await self.fetched.put(messages)

    async def next_batch(self) -> list[FetchedEvent]:
        """The next whole fetch (or part of one) for the agent, tracked as in flight."""
        while True:
            messages: list[Message] = await self.fetched.get()
            generation = self.app.consumer_generation_id
            if not self.app.flow_control.is_active() or messages[-1].generation_id != generation:
                continue  # fetched before a rebalance: Faust re-seeks and fetches it again
            self.track(messages)
            sensors, inbound = self.app.sensors, self.app.monitor.stream_inbound_time
            now = time.monotonic()
            for tp, message in {m.tp: m for m in messages}.items():  # the last of each
                sensors.on_message_in(tp, message.offset, message)
                inbound[tp] = now  # what Faust's livelock warnings read
            return [FetchedEvent(m) for m in messages]

    def ack_batch(self, events: list[FetchedEvent]) -> None:
        """Ack a processed batch: its offsets may now be committed."""
        ack = self.ack
        for event in events:
            if not event.message.acked:
                ack(event.message)

    async def on_fetch_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # Faust's gaps come from jumps between fetched offsets; with the guard the
        # agent checks jumps itself, against the broker, and reports real gaps.
        if not self.offset_guard:
            await super().on_fetch_gap(tp, offset_from, offset_to)

    def owned(self, topic: str) -> set[TP]:
        """The partitions of ``topic`` assigned to this worker now."""
        return {tp for tp in self.assignment() if tp.topic == topic}

    def mark_absent(self, tp: TP, offsets: range) -> None:
        """Offsets the broker confirmed hold nothing readable: commit through them."""
        self.absent.setdefault(tp, set()).update(offsets)

    async def reread(self, tp: TP, offset: int) -> None:
        """Seek ``tp`` back to a record the agent never got (see streams.continuity)."""
        log.warning("%s@%s was fetched but never reached the agent (faust #596): "
                    "re-reading from it", tp, offset)  # fmt: skip
        self.rereading[tp] = offset
        self.repaired += 1
        try:
            await self.seek_wait({tp: offset})
        except IllegalStateError:  # revoked meanwhile: Faust re-seeks after the rebalance
            log.info("%s was revoked before the re-read; its next owner reads it", tp)

    async def commit_partitions(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
        async with self.barrier:
            return await super().commit_partitions(tps, start_new_transaction)

    async def commit_and_end_transactions(self) -> None:
        """The final commit of a rebalance (and of a shutdown), never skipped.

        Faust's version returns at once when a periodic commit is running, so the
        events the agent finishes during the revocation stay uncommitted, their
        output in an open transaction that outlives the rebalance. Faust then
        seeks back to the committed offsets and re-reads the changelog (committed
        data only), the events are processed again, and both outputs commit
        together: every one of them twice. Here the final commit waits for the
        running one and then commits everything acked.
        """
        await self.commit_now(start_new_transaction=False)
        if not self.in_transaction:
            return
        leftover = {tp: sorted(acked)[:3] for tp, acked in self.acked_offsets.items() if acked}
        if leftover:
            # Processed but not committable (a hole): the same trap as above. Exit like
            # a crash instead; a restart rebuilds state from committed data only.
            log.critical("events processed but not committable at a rebalance: %s", leftover)
            self.on_uncommittable(leftover)
        await self.wait_transactions_settled()

    async def commit_now(self, start_new_transaction: bool = True) -> None:
        """Commit everything acked: after a running commit, never instead of it."""
        await self.maybe_wait_for_commit_to_finish()
        await self.commit_as_running(start_new_transaction)

    async def wait_transactions_settled(self, timeout: float = 10.0) -> None:
        """Wait until our committed transactions are visible: offsets and changelog data.

        A transaction's commit returns once the coordinator has decided it; the
        markers that make its offsets and records visible follow. A partition
        this worker keeps across a rebalance is recovered and re-sought right
        away, and aiokafka's offset fetch cannot ask for stable offsets
        (KIP-447), so it would read the offsets and changelog of *before* the
        last transaction and process that transaction's events again. (A worker
        taking a partition over is safe: initialising the partition's
        transactional producer waits for the old transaction to complete.)
        """
        assigned = self.assignment()
        offsets = {tp: o for tp, o in self.committed_offsets.items()
                   if o is not None and tp in assigned}  # fmt: skip
        tables = [t for t in self.app.tables.values() if hasattr(t, "written")]
        changelog = {tp: offset + 1 for t in tables for tp, offset in t.written.items()
                     if tp in assigned}  # fmt: skip
        view = self.broker_view
        deadline = time.monotonic() + timeout
        while True:
            visible = await view.committed(self.app.conf.id, offsets) if offsets else {}
            ends = await view.end_offsets(changelog) if changelog else {}
            behind = {tp: (visible.get(tp), want) for tp, want in offsets.items()
                      if (visible.get(tp) or 0) < want}  # fmt: skip
            behind.update({tp: (ends.get(tp), want) for tp, want in changelog.items()
                           if (ends.get(tp) or 0) < want})  # fmt: skip
            if not behind:
                # Committed and visible: a restart may read the changelog from here on.
                for table in tables:
                    for tp, offset in table.written.items():
                        if tp in assigned:
                            table.data.set_persisted_offset(tp, offset)
                return
            if time.monotonic() > deadline:
                log.critical("committed transactions not visible after %ss: %s", timeout, behind)
                self.on_uncommittable({tp: [want] for tp, (_, want) in behind.items()})
                return
            await asyncio.sleep(0.05)

    def on_uncommittable(self, leftover: Mapping[TP, list[int]]) -> None:
        import os

        logging.shutdown()
        os._exit(EXIT_UNCOMMITTABLE)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        # Faust forgets the acks of revoked partitions before it lets the agent finish
        # and commits: what was acked until now would never be committed, its output
        # left in an open transaction. Commit it first.
        await self.commit_now()
        for tp in revoked:
            self.holes.pop(tp, None)
            self.absent.pop(tp, None)
            self.rereading.pop(tp, None)
            self.needed.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    def next_commit_offset(self, tp: TP) -> int | None:
        if not self.offset_guard:
            return super().next_commit_offset(tp)
        acked = self.acked(tp)
        if not acked:
            return None
        in_flight = self.in_flight(tp)
        gaps = self.fetch_gaps(tp)
        absent = self.absent.get(tp, set())

        def is_absent(offset: int) -> bool:
            return offset in absent

        decision = committable_offset(self.committed_offsets[tp], acked, in_flight, is_absent)
        if decision.hole is None:
            self.holes.pop(tp, None)
        elif tp not in self.holes or self.holes[tp].offset != decision.hole:
            self.holes[tp] = Hole(decision.hole, time.monotonic())
        if decision.offset is None:
            return None
        new = decision.offset
        if self.rereading.get(tp, new) < new:
            del self.rereading[tp]  # the re-read record is processed and committed
        self.keep_acked(tp, [o for o in acked if o >= new])
        if gaps:
            gaps.chop(0, new)
        if absent:
            self.absent[tp] = {o for o in absent if o >= new}
        return new

    async def repair_holes(self) -> list[tuple[TP, int, str]]:
        """Resolve holes older than ``hole_grace``; returns (tp, offset, action) per hole."""
        actions: list[tuple[TP, int, str]] = []
        now = time.monotonic()
        for tp, hole in list(self.holes.items()):
            if now - hole.since < self.hole_grace or tp not in self.assignment():
                continue
            if self.rereading.get(tp) == hole.offset:
                continue  # the agent found it first and is re-reading it
            first = await self.broker_view.first_offset_from(tp, hole.offset)
            if self.holes.get(tp) is not hole:
                continue  # resolved (or moved) while we asked
            if first is None:
                continue  # nothing readable yet (e.g. an open transaction): ask again later
            if first > hole.offset:
                # Nothing this consumer can ever read in [hole, first): commit through it.
                self.absent.setdefault(tp, set()).update(range(hole.offset, first))
                actions.append((tp, hole.offset, "absent"))
                log.info("offsets %s..%s of %s hold no record: committing through", hole.offset,
                         first - 1, tp)  # fmt: skip
            elif self.in_transaction:
                # A real record never reached the agent, and the agent processed events
                # after it (it would have held them back otherwise): re-reading it now
                # would put it behind later events of its user. Roll back instead:
                # exit like a crash; the open transaction is aborted, the restart
                # rebuilds state from committed data and reads from the hole.
                actions.append((tp, hole.offset, "restart"))
                log.critical("%s@%s never reached the agent and later events were "
                             "processed: restarting from committed state",
                             tp, hole.offset)  # fmt: skip
                self.on_uncommittable({tp: [hole.offset]})
            else:
                # At-least-once: no rollback exists; re-read so the event is not lost (it
                # may now be out of order for its user, and be counted as such).
                await self.seek_wait({tp: hole.offset})
                self.repaired += 1
                actions.append((tp, hole.offset, "reread"))
                log.warning("%s@%s never reached the agent: re-reading from it", tp,
                            hole.offset)  # fmt: skip
            del self.holes[tp]
        return actions


class RecoilTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport, creating :class:`RecoilConsumer`."""

    Consumer = RecoilConsumer
