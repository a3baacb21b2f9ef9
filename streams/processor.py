"""One agent batch: decode, advance user states, send examples, dead letters and state.

The agent hands each batch of input events here; everything about a batch
that needs care lives in this one place, in this order (what one record does
is decided apart, without I/O, in :mod:`streams.decision`; Faust's private
names are reached through :mod:`streams.faust_internals` only):

1. Hold the consumer's batch barrier, so no commit falls inside the batch.
2. Per event: decode it (:func:`recoil.core.events.parse_event`), read its
   user's stored state, and apply what :func:`streams.decision.decide` says:
   a dead letter (:mod:`streams.dlq`), nothing, or the user's next state and
   the training example of a labelled event. Sends are queued, not awaited
   one by one.
3. At-least-once only: wait until the examples and dead letters are
   acknowledged by the broker *before* the table records the events as seen;
   a crash in between then repeats examples rather than losing them.
4. Write each touched user's state once (table + changelog, explicit partition).

Before each batch the worker notes where it is (:mod:`streams.crashloop`);
a record the previous process died at is handled by the crash-loop rule
instead of step 2: carefully, as a minimal dead letter, or skipped. When a
send fails, the worker exits naming the record it was for.

In exactly-once mode every send of a batch goes into the transaction of the
input partition it came from (Faust names it ``{app_id}-{group}-{partition}``),
whatever partition of the output topic the record lands in; the transaction
commits together with the input offsets, so examples, dead letters, table
changes and progress become visible together or not at all.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from aiokafka.errors import KafkaError
from faust.types import TP, Message

# parse_event is looked up here on every record orjson cannot take as a valid event: a
# test injects a fault through it.
from recoil.core.events import (
    MAX_EVENT_BYTES,
    InteractionEvent,
    Invalid,
    parse_event,
    validate_event,
)
from recoil.core.records import LABEL_HEADER
from streams import crashloop
from streams.config import StreamsConfig
from streams.consumer import RecoilConsumer
from streams.continuity import OffsetContinuity, StallWatch
from streams.crashloop import CrashNotes, Spot
from streams.decision import (
    Drop,
    RecordDecision,
    Stored,
    ToDeadLetter,
    check_record,
    decide,
    failed,
)
from streams.decision import check_key as check_key  # the fuzz test's expectations use it
from streams.dlq import dead_letter
from streams.faust_internals import CurrentEvent, SourceEvent, kafka_producer
from streams.metrics import StreamMetrics
from streams.partitions import KeyPartitions
from streams.state import OUTCOMES, Outcome, UserState
from streams.supervisor import EXIT_SEND_FAILED
from streams.table import HistoryTable

log = logging.getLogger(__name__)

REREAD_TIMEOUT = 5.0  # seconds before a re-read that has not come back is sought again
CRASH_LOOP = "crash_loop"  # Invalid.code of a minimal dead letter (streams.crashloop)
# A batch's changed users: user id -> next state, and the event that changed it last.
Pending = dict[str, tuple[UserState, SourceEvent]]


@dataclass
class BatchResult:
    """What one batch did (the agent logs nothing per event; tests read this)."""

    outcomes: dict[Outcome, int] = field(default_factory=dict)
    examples: int = 0
    dead_letters: int = 0
    reread_from: dict[int, int] = field(default_factory=dict)  # partition -> lost offset


class BatchProcessor:
    """Processes agent batches for one worker (see the module docstring)."""

    def __init__(
        self,
        app: Any,
        table: HistoryTable,
        config: StreamsConfig,
        metrics: StreamMetrics,
        on_fatal: Callable[[BaseException], None] | None = None,
        notes: CrashNotes | None = None,
    ) -> None:
        self.app = app
        self.table = table
        self.config = config
        self.metrics = metrics
        self.on_fatal = on_fatal or _exit_now
        self.next_offsets: dict[int, int] = {}  # input partition -> next offset to process
        self.new_users = 0  # users first seen since the last table recount
        # Decoded states of recently active users (the table stays the truth; this
        # skips a store read and a JSON decode per event). Emptied after every
        # rebalance: a partition that left and came back may have moved on elsewhere.
        self.cache: OrderedDict[str, UserState] = OrderedDict()
        self._cache_rebalance = -1
        self.failed_send: BaseException | None = None  # a queued send the broker refused
        self.failed_at: Message | None = None  # the input record of that send
        self.current: Message | None = None  # the input record being handled
        self.notes = notes  # where the worker is, for the next start (streams.crashloop)
        self.dead_letters: list[Awaitable[Any]] = []  # this batch's dead-letter sends
        self.continuity = OffsetContinuity(self._probe)
        self.stalls = StallWatch(config.stall_grace)
        # Bound once: labels() costs a lock and a tuple per call, several per event.
        self._event_counters = {o: metrics.events.labels(outcome=o) for o in OUTCOMES}
        self._example_counters: dict[str, Any] = {}
        self._transactional_ids: dict[int, str | None] = {}  # input partition -> its id
        self.partitions = KeyPartitions()  # examples: user id -> output partition

    def transactional_id(self, partition: int) -> str | None:
        """The Faust transaction of an input partition (None in at-least-once mode)."""
        if partition in self._transactional_ids:
            return self._transactional_ids[partition]
        tid = None
        if self.config.exactly_once:
            group = self.app.assignor.group_for_topic(self.config.input_topic)
            tid = f"{self.app.conf.id}-{group}-{partition}"
        self._transactional_ids[partition] = tid
        return tid

    async def process_batch(self, events: Sequence[SourceEvent]) -> BatchResult:
        result = BatchResult()
        if self.failed_send is not None:  # seen by a delivery callback since the last batch
            self._fatal(self.failed_send)
        consumer: RecoilConsumer = self.app.consumer
        self._on_generation()
        try:
            async with consumer.barrier:
                await self._process(events, result)
        except Exception as exc:  # a send failed (the producer cannot be trusted any more),
            # or the worker's own code failed on a record: the crash-loop rule takes over
            self._fatal(exc)
            raise
        for partition, offset in self.continuity.expected.items():
            consumer.needed[TP(self.config.input_topic, partition)] = offset
        result.reread_from.update(await self.reseek())
        return result

    def _on_generation(self) -> None:
        """After a rebalance, start again from the committed offsets Faust sought to."""
        if self._cache_rebalance == self.app.rebalancing_count:
            return
        consumer: RecoilConsumer = self.app.consumer
        self.cache.clear()
        self.next_offsets.clear()
        consumer.needed.clear()
        self.continuity.reset(
            {tp.partition: consumer.committed_offsets.get(tp)
             for tp in consumer.owned(self.config.input_topic)}
        )  # fmt: skip
        self.stalls.reset()
        self._cache_rebalance = self.app.rebalancing_count

    async def repair(self) -> None:
        """Find and re-read lost records (the offset guard's timer, every ``hole_grace / 2``
        seconds). Each one is counted once in ``recoil_stream_lost_records_total`` by how
        it showed: a jump or a stall here, a hole by the consumer's own repair."""
        if self.app.rebalancing:
            return
        await self.watch_stalls()  # records no later record reveals as lost
        await self.reseek()  # re-reads that did not come back
        consumer: RecoilConsumer = self.app.consumer
        for _, _, action in await consumer.repair_holes():
            if action == "reread":  # at-least-once: a lost record found by its hole
                self.metrics.lost_records.labels(cause="hole").inc()

    async def watch_stalls(self) -> None:
        """Re-read each partition whose next needed record has waited on the broker for
        ``stall_grace`` seconds without reaching the agent (``StallWatch``)."""
        consumer: RecoilConsumer = self.app.consumer
        if self._cache_rebalance != self.app.rebalancing_count:
            async with consumer.barrier:  # never between a batch's start and its end
                self._on_generation()
        owned = consumer.owned(self.config.input_topic)
        if not owned:
            return
        view = self.app.broker_view
        needs: dict[TP, int | None] = {
            tp: self.continuity.expected.get(tp.partition, consumer.committed_offsets.get(tp))
            for tp in owned
        }
        try:
            unknown = [tp for tp, need in needs.items() if need is None]
            if unknown:  # nothing committed yet: the partition's first record
                needs.update(await view.beginning_offsets(unknown))
            ends = await view.end_offsets(owned)
            stalled = self.stalls.check(
                {tp.partition: need for tp, need in needs.items() if need is not None},
                {tp.partition: end for tp, end in ends.items()},
            )
            for partition, need in stalled.items():
                tp = TP(self.config.input_topic, partition)
                if partition in self.continuity.rereads or tp not in consumer.assignment():
                    continue  # re-read already (its own timeout applies), or moved on
                first = await view.first_offset_from(tp, need)
                if first is None:  # nothing readable there: a transaction marker, an abort
                    self.stalls.nothing_readable(partition, need, ends[tp])
                    continue
                log.warning("%s@%s is on the broker (end %s) and has not reached the agent "
                            "in %ss: re-reading from %s", tp, need, ends[tp],
                            self.config.stall_grace, first)  # fmt: skip
                if first > need:  # confirmed empty between: commit through them
                    consumer.mark_absent(tp, range(need, first))
                self.continuity.stalled(partition, first)
        except (TimeoutError, KafkaError) as exc:  # the broker: ask again next time
            log.info("stall check skipped: %r", exc)

    async def reseek(self) -> dict[int, int]:
        """Issue pending and overdue re-reads (after each batch, and once a second)."""
        if self.app.rebalancing:  # Faust re-seeks every partition after a rebalance
            return {}
        consumer: RecoilConsumer = self.app.consumer
        owned = consumer.assignment()
        issued = self.continuity.to_seek()  # each lost record once, by how it showed
        for partition in issued:
            self.metrics.lost_records.labels(cause=self.continuity.cause(partition)).inc()
        seeks = issued | self.continuity.overdue(REREAD_TIMEOUT)
        done = {}
        for partition, offset in seeks.items():
            tp = TP(self.config.input_topic, partition)
            if tp in owned:  # a partition that moved on is re-read by its new owner
                await consumer.reread(tp, offset)
                done[partition] = offset
        return done

    async def _probe(self, partition: int, offset: int) -> int | None:
        view = self.app.broker_view
        return await view.first_offset_from(TP(self.config.input_topic, partition), offset)

    def _fatal(self, exc: BaseException) -> None:
        # Faust would ack the batch and, on its way down, commit it: exit instead,
        # exactly like SIGKILL, which the restart path is built and tested for.
        culprit = self.failed_at or self.current
        if self.notes is not None and culprit is not None:
            # The next start knows which record this was (the crash-loop rule).
            self.notes.note_record(culprit.topic, culprit.partition, culprit.offset,
                                   f"{type(exc).__name__}: {exc}")  # fmt: skip
        where = "" if culprit is None else f" at {culprit.tp}@{culprit.offset}"
        log.critical("batch failed%s; exiting without committing: %r", where, exc, exc_info=exc)
        self.on_fatal(exc)

    def _track(self, delivery: Awaitable[Any], source: Message) -> None:
        """Remember which input record a send was for, should the broker refuse it."""
        future = cast("asyncio.Future[Any]", delivery)
        future.add_done_callback(functools.partial(self._on_delivery, source))

    def _on_delivery(self, source: Message, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None and self.failed_send is None:
            self.failed_send = fut.exception()
            self.failed_at = source

    async def _process(self, events: Sequence[SourceEvent], result: BatchResult) -> None:
        pending: Pending = {}
        deliveries: list[Awaitable[Any]] = []
        self.dead_letters.clear()
        if self.notes is not None:
            self.notes.note_batch(batch_ranges(events))
        for event in events:
            started = time.perf_counter()
            message = event.message
            outcome = await self._record(event, pending, deliveries, result)
            if outcome is not None:
                self._count(result, outcome, message.partition, message.offset, started)
        self.current = None
        await self._settle(deliveries)
        await self._write_states(pending)

    async def _record(
        self,
        event: SourceEvent,
        pending: Pending,
        deliveries: list[Awaitable[Any]],
        result: BatchResult,
    ) -> Outcome | None:
        """One input record: admission, then its crash-loop rule; None: held back or a repeat,
        not counted."""
        message = event.message
        admission = (
            await self.continuity.admit(message.partition, message.offset)
            if self.config.offset_guard
            else "process"
        )
        if admission == "held":
            # Neither processed nor acked: the commit cannot pass it, the re-read does.
            message.acked = True
            return None
        if admission == "repeat":
            # Processed already, its output exists: fetched again after a seek (a re-read,
            # or a batch handed over before recovery's seek). Not an input duplicate: not
            # counted as an event again.
            return None
        if admission == "gap":  # confirmed empty offsets before this one
            tp = TP(self.config.input_topic, message.partition)
            self.app.consumer.mark_absent(tp, self.continuity.last_gap)
        tid = self.transactional_id(message.partition)
        spot = (
            self.notes.lookup(message.topic, message.partition, message.offset)
            if self.notes is not None
            else None
        )
        rule = crashloop.decide(spot)
        if rule != "process":
            assert spot is not None
            return await self._handle_noted(event, spot, rule, tid, pending, result)
        self.current = message
        outcome, sent = await self._handle(event, tid, pending, result)
        deliveries += sent
        return outcome

    async def _settle(self, deliveries: list[Awaitable[Any]]) -> None:
        """Wait for what must be acknowledged before the table records the batch as seen."""
        if not self.config.exactly_once and deliveries:
            await asyncio.gather(*deliveries)
        elif self.dead_letters:
            # The transaction makes waiting unnecessary in exactly-once mode, and a refused
            # example is noticed by the next batch (_on_delivery). Dead letters are rare and
            # the likeliest to be refused: wait for them, so a refusal names its record now
            # rather than at a commit that fails without saying which.
            await asyncio.gather(*self.dead_letters)
        self.dead_letters.clear()

    async def _write_states(self, pending: Pending) -> None:
        """Write each touched user's state once (table + changelog) and keep it cached."""
        cache, limit = self.cache, self.config.state_cache_users
        for user, (state, event) in pending.items():
            tid = self.transactional_id(event.message.partition)
            written = await self.table.put(user.encode(), state.to_bytes(), event, tid)
            self._track(written, event.message)
            cache[user] = state
            cache.move_to_end(user)
        while len(cache) > limit:
            cache.popitem(last=False)

    async def _handle(
        self,
        event: SourceEvent,
        tid: str | None,
        pending: Pending,
        result: BatchResult,
        minimal_dead_letter: bool = False,
    ) -> tuple[Outcome, list[Awaitable[Any]]]:
        """Decide one event and apply the decision; returns its outcome and queued sends."""
        message = event.message
        # parse_event checks the size before it decodes anything (recoil.core.events).
        record = check_record(
            message.key, decode_event(message.value if message.value is not None else b"")
        )
        decision = self._decide(event, record, pending)
        if isinstance(decision, ToDeadLetter):
            sent = await self._send_dead_letter(event, decision.problem, tid, minimal_dead_letter)
            result.dead_letters += 1
            return decision.outcome, [sent]
        if isinstance(decision, Drop):
            return decision.outcome, []
        pending[decision.user_id] = (decision.state, event)
        if decision.example is None:
            return decision.outcome, []
        label = decision.example_label
        sent = await self._send(
            self.config.output_topic, decision.user_id.encode(), decision.example_json,
            [(LABEL_HEADER, label)] if label is not None else None, tid, message, keyed=True,
        )  # fmt: skip
        kind = decision.example.label_kind
        counter = self._example_counters.get(kind)
        if counter is None:
            counter = self._example_counters[kind] = self.metrics.training_examples.labels(
                kind=kind
            )
        counter.inc()
        result.examples += 1
        return decision.outcome, [sent]

    def _decide(
        self,
        event: SourceEvent,
        record: InteractionEvent | Invalid,
        pending: Pending,
    ) -> RecordDecision:
        """:func:`streams.decision.decide`, given the user's stored state."""
        if isinstance(record, Invalid):
            return decide(record, None, self.config.labels, self.config.dedupe_window)
        try:
            stored = self._stored(record.user_id, pending, event)
        except Exception as exc:  # an unreadable store: park the event
            decision: RecordDecision = failed(exc)
        else:
            decision = decide(record, stored, self.config.labels, self.config.dedupe_window)
        if isinstance(decision, ToDeadLetter) and decision.error is not None:
            log.error("processing %s failed; sent to the DLQ", record.event_id,
                      exc_info=decision.error)  # fmt: skip
        return decision

    async def _handle_noted(
        self,
        event: SourceEvent,
        spot: Spot,
        rule: crashloop.Decision,
        tid: str | None,
        pending: Pending,
        result: BatchResult,
    ) -> Outcome:
        """A record the worker died at before: the crash-loop rule (streams.crashloop)."""
        notes, message = self.notes, event.message
        assert notes is not None
        topic, partition, offset = message.topic, message.partition, message.offset
        if spot.precise and notes.reached_again(spot):
            self.metrics.same_offset_restarts.inc()
            log.warning("back at %s/%s@%s, where the worker died %d time(s) (%s): %s", topic,
                        partition, offset, spot.deaths, spot.reason or "no reason known",
                        _ACTIONS[rule])  # fmt: skip
        self.current = message
        notes.note_record(topic, partition, offset, spot.reason)
        if rule == "careful":
            try:
                outcome, sent = await self._handle(
                    event, tid, pending, result, minimal_dead_letter=spot.precise
                )
            except Exception as exc:  # raised here, not by the broker: nothing went out
                log.exception("%s/%s@%s failed again after a restart", topic, partition, offset)
                reason = f"failed again after a restart: {type(exc).__name__}: {exc}"
                return await self._minimal_or_skip(event, reason, tid, result)
            await asyncio.gather(*sent)  # a refusal now names this record (see _fatal)
            notes.note_batch_again()
            return outcome
        if rule == "minimal":
            reason = f"the worker died at this record {spot.deaths} times; last: {spot.reason}"
            return await self._minimal_or_skip(event, reason, tid, result)
        log.error("skipping %s/%s@%s without a dead letter: the worker died at it %d times "
                  "(last: %s)", topic, partition, offset, spot.deaths, spot.reason)  # fmt: skip
        return self._skipped(notes)

    async def _minimal_or_skip(
        self, event: SourceEvent, reason: str, tid: str | None, result: BatchResult
    ) -> Outcome:
        """Write the minimal dead letter and wait for it; skip if it cannot even be sent."""
        notes, message = self.notes, event.message
        assert notes is not None
        try:
            sent = await self._send_dead_letter(
                event, Invalid(CRASH_LOOP, reason), tid, minimal=True
            )
        except Exception:
            log.exception("skipping %s/%s@%s: not even its minimal dead letter can be sent",
                          message.topic, message.partition, message.offset)  # fmt: skip
            return self._skipped(notes)
        await sent  # refused by the broker: the next start skips it (see _fatal)
        result.dead_letters += 1
        notes.note_batch_again()
        return "invalid"

    def _skipped(self, notes: CrashNotes) -> Outcome:
        """A record passed over without any output (its outcome counts as invalid)."""
        self.metrics.skipped_records.inc()
        notes.skipped()
        return "invalid"

    def _count(
        self, result: BatchResult, outcome: Outcome, partition: int, offset: int, started: float
    ) -> None:
        if outcome != "duplicate" or offset >= self.continuity.expected.get(partition, -1):
            self.continuity.processed(partition, offset)
        self._event_counters[outcome].inc()
        result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
        self.next_offsets[partition] = offset + 1
        self.metrics.processing_seconds.observe(time.perf_counter() - started)

    def _stored(self, user: str, pending: Pending, event: SourceEvent) -> Stored:
        """What the worker holds for ``user``: this batch's state, the cache's, or the table's."""
        if user in pending:
            return pending[user][0]
        cached = self.cache.get(user)
        if cached is not None:
            return cached
        with CurrentEvent(event):  # the table reads the event's partition
            raw: bytes | None = self.table.get(user.encode())
        if raw is None:
            self.new_users += 1
        return raw

    async def _send_dead_letter(
        self, event: SourceEvent, invalid: Invalid, tid: str | None, minimal: bool = False
    ) -> Awaitable[Any]:
        message = event.message
        letter = dead_letter(invalid, message.key, message.value, message.topic,
                             message.partition, message.offset, minimal=minimal)  # fmt: skip
        self.metrics.invalid_events.labels(reason=invalid.code).inc()
        self.metrics.dlq_events.inc()
        fut = await self._send(
            self.config.dlq_topic, letter.key, letter.value, letter.headers, tid, message
        )
        self.dead_letters.append(fut)
        return fut

    async def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None,
        tid: str | None,
        source: Message,
        keyed: bool = False,
    ) -> Awaitable[Any]:
        """Queue one record in the input partition's transaction; track it for ``source``.

        ``keyed``: the partition is the key's (Kafka's default rule, cached per key).
        """
        producer = kafka_producer(self.app.producer, tid)
        partition = None
        if keyed and key is not None:
            known = producer.client.cluster.partitions_for_topic(topic)
            if known:  # else aiokafka fetches the metadata and applies the same rule
                partition = self.partitions.partition(key, known)
        fut: Awaitable[Any] = await producer.send(
            topic, value, key=key, partition=partition, headers=headers
        )
        self._track(fut, source)
        return fut


_ACTIONS: dict[crashloop.Decision, str] = {
    "careful": "handling it alone, an invalid one with a minimal dead letter",
    "minimal": "writing a minimal dead letter instead of processing it",
    "skip": "skipping it",
}


def decode_event(raw: bytes) -> InteractionEvent | Invalid:
    """:func:`recoil.core.events.parse_event`'s answer, decoded with orjson when it can be.

    orjson decodes about three times faster than ``json``. Where the two could
    differ (integers beyond 64 bits, which orjson makes floats) the event is not
    valid, and every event that is not valid as orjson read it, or that orjson
    refuses, goes through ``parse_event`` itself, so its dead-letter reason is
    exactly ``parse_event``'s.
    """
    if len(raw) <= MAX_EVENT_BYTES:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            event = validate_event(obj)
            if isinstance(event, InteractionEvent):
                return event
    return parse_event(raw)


def batch_ranges(events: Sequence[SourceEvent]) -> dict[tuple[str, int], tuple[int, int]]:
    """The offset range of each (topic, partition) in a batch."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for event in events:
        m = event.message
        first, last = ranges.get((m.topic, m.partition), (m.offset, m.offset))
        ranges[(m.topic, m.partition)] = (min(first, m.offset), max(last, m.offset))
    return ranges


def _exit_now(exc: BaseException) -> None:
    logging.shutdown()
    os._exit(EXIT_SEND_FAILED)
