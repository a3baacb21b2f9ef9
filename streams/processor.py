"""One agent batch: decode, advance user states, send examples, dead letters and state.

The agent hands each batch of input events here; everything Faust-specific
that needs care lives in this one place, in this order:

1. Hold the consumer's batch barrier, so no commit falls inside the batch.
2. Per event: decode and validate (:func:`recoil.core.events.parse_event`); an
   invalid one becomes a dead letter (:mod:`streams.dlq`). A valid one
   advances its user's state (:func:`streams.state.advance`); a labelled one
   sends its training example. Sends are queued, not awaited one by one.
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
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from faust.streams import _current_event
from faust.types import TP, EventT, Message

from recoil.core.events import InteractionEvent, Invalid, parse_event
from streams.config import StreamsConfig
from streams.consumer import RecoilConsumer
from streams.continuity import OffsetContinuity
from streams.crashloop import CrashNotes, Decision, Spot, decide
from streams.dlq import dead_letter
from streams.metrics import StreamMetrics
from streams.state import Outcome, UserState, advance
from streams.supervisor import EXIT_SEND_FAILED
from streams.table import HistoryTable

log = logging.getLogger(__name__)

REREAD_TIMEOUT = 5.0  # seconds before a re-read that has not come back is sought again
CRASH_LOOP = "crash_loop"  # Invalid.code of a minimal dead letter (streams.crashloop)


@dataclass
class BatchResult:
    """What one batch did (the agent logs nothing per event; tests read this)."""

    outcomes: dict[Outcome, int] = field(default_factory=dict)
    examples: int = 0
    dead_letters: int = 0
    reread_from: dict[int, int] = field(default_factory=dict)  # partition -> lost offset


def check_key(key: bytes | None, event: InteractionEvent) -> Invalid | None:
    """Events must be keyed by their user id: one partition holds all of a user's events."""
    if key is None:
        return Invalid("wrong_key", "record has no key; key events by user_id")
    if key != event.user_id.encode():
        return Invalid(
            "wrong_key",
            f"record key {key[:64]!r} is not the event's user_id {event.user_id[:64]!r}",
        )
    return None


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

    def transactional_id(self, partition: int) -> str | None:
        """The Faust transaction of an input partition (None in at-least-once mode)."""
        if not self.config.exactly_once:
            return None
        group = self.app.assignor.group_for_topic(self.config.input_topic)
        return f"{self.app.conf.id}-{group}-{partition}"

    async def process_batch(self, events: Sequence[EventT]) -> BatchResult:
        result = BatchResult()
        if self.failed_send is not None:  # seen by a delivery callback since the last batch
            self._fatal(self.failed_send)
        consumer: RecoilConsumer = self.app.consumer
        if self._cache_rebalance != self.app.rebalancing_count:
            self.cache.clear()
            self.next_offsets.clear()
            consumer.needed.clear()
            self.continuity.reset(
                {tp.partition: consumer._committed_offset.get(tp)
                 for tp in consumer.assignment() if tp.topic == self.config.input_topic}
            )  # fmt: skip
            self._cache_rebalance = self.app.rebalancing_count
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

    async def reseek(self) -> dict[int, int]:
        """Issue pending and overdue re-reads (after each batch, and once a second)."""
        if self.app.rebalancing:  # Faust re-seeks every partition after a rebalance
            return {}
        consumer: RecoilConsumer = self.app.consumer
        owned = consumer.assignment()
        seeks = self.continuity.to_seek() | self.continuity.overdue(REREAD_TIMEOUT)
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

    async def _process(self, events: Sequence[EventT], result: BatchResult) -> None:
        pending: dict[str, tuple[UserState, EventT]] = {}
        deliveries: list[Awaitable[Any]] = []
        self.dead_letters.clear()
        if self.notes is not None:
            self.notes.note_batch(batch_ranges(events))
        for event in events:
            started = time.perf_counter()
            message = event.message
            admission = (
                await self.continuity.admit(message.partition, message.offset)
                if self.config.offset_guard
                else "process"
            )
            if admission == "held":
                # Neither processed nor acked: the commit cannot pass it, the re-read does.
                message.acked = True
                continue
            if admission == "repeat":  # processed before a re-read; its output exists
                self._count(result, "duplicate", message.partition, message.offset, started)
                continue
            if admission == "gap":  # confirmed empty offsets before this one
                tp = TP(self.config.input_topic, message.partition)
                self.app.consumer.mark_absent(tp, self.continuity.last_gap)
            tid = self.transactional_id(message.partition)
            spot = (
                self.notes.lookup(message.topic, message.partition, message.offset)
                if self.notes is not None
                else None
            )
            decision = decide(spot)
            if decision == "process":
                self.current = message
                outcome, sent = await self._handle(event, tid, pending, result)
                deliveries += sent
            else:
                assert spot is not None
                outcome = await self._handle_noted(event, spot, decision, tid, pending, result)
            self._count(result, outcome, message.partition, message.offset, started)
        self.current = None
        if not self.config.exactly_once and deliveries:
            await asyncio.gather(*deliveries)
        elif self.dead_letters:
            # The transaction makes waiting unnecessary in exactly-once mode, and a refused
            # example is noticed by the next batch (_on_delivery). Dead letters are rare and
            # the likeliest to be refused: wait for them, so a refusal names its record now
            # rather than at a commit that fails without saying which.
            await asyncio.gather(*self.dead_letters)
        self.dead_letters.clear()
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
        event: EventT,
        tid: str | None,
        pending: dict[str, tuple[UserState, EventT]],
        result: BatchResult,
        minimal_dead_letter: bool = False,
    ) -> tuple[Outcome, list[Awaitable[Any]]]:
        """Decode, validate and advance one event; returns its outcome and queued sends."""
        message = event.message
        sent: list[Awaitable[Any]] = []
        # parse_event checks the size before it decodes anything (recoil.core.events).
        parsed = parse_event(message.value if message.value is not None else b"")
        if isinstance(parsed, InteractionEvent):
            problem = check_key(message.key, parsed)
            if problem is not None:
                parsed = problem
        if isinstance(parsed, Invalid):
            sent.append(await self._send_dead_letter(event, parsed, tid, minimal_dead_letter))
            result.dead_letters += 1
            return "invalid", sent
        token = _current_event.set(weakref.ref(event))  # the table's partition
        user = parsed.user_id
        try:
            state = pending[user][0] if user in pending else self._load(user)
            step = advance(state, parsed, self.config.labels, self.config.dedupe_window)
        except Exception as exc:  # a bug or a corrupt stored state: park the event
            log.exception("processing %s failed; sent to the DLQ", parsed.event_id)
            problem = Invalid("processing_error", f"{type(exc).__name__}: {exc}")
            sent.append(await self._send_dead_letter(event, problem, tid, minimal_dead_letter))
            result.dead_letters += 1
            return "invalid", sent
        finally:
            _current_event.reset(token)
        if step.state is not state:
            pending[user] = (step.state, event)
        if step.example is not None:
            sent.append(
                await self.app.producer.send(
                    self.config.output_topic,
                    user.encode(),
                    step.example_json,
                    None,
                    None,
                    None,
                    transactional_id=tid,
                )
            )
            self._track(sent[-1], message)
            self.metrics.training_examples.labels(kind=step.example.label_kind).inc()
            result.examples += 1
        return step.outcome, sent

    async def _handle_noted(
        self,
        event: EventT,
        spot: Spot,
        decision: Decision,
        tid: str | None,
        pending: dict[str, tuple[UserState, EventT]],
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
                        _ACTIONS[decision])  # fmt: skip
        self.current = message
        notes.note_record(topic, partition, offset, spot.reason)
        if decision == "careful":
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
        if decision == "minimal":
            reason = f"the worker died at this record {spot.deaths} times; last: {spot.reason}"
            return await self._minimal_or_skip(event, reason, tid, result)
        log.error("skipping %s/%s@%s without a dead letter: the worker died at it %d times "
                  "(last: %s)", topic, partition, offset, spot.deaths, spot.reason)  # fmt: skip
        self.metrics.skipped_records.inc()
        notes.skipped()
        return "invalid"

    async def _minimal_or_skip(
        self, event: EventT, reason: str, tid: str | None, result: BatchResult
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
            self.metrics.skipped_records.inc()
            notes.skipped()
            return "invalid"
        await sent  # refused by the broker: the next start skips it (see _fatal)
        result.dead_letters += 1
        notes.note_batch_again()
        return "invalid"

    def _count(
        self, result: BatchResult, outcome: Outcome, partition: int, offset: int, started: float
    ) -> None:
        if outcome != "duplicate" or offset >= self.continuity.expected.get(partition, -1):
            self.continuity.processed(partition, offset)
        self.metrics.events.labels(outcome=outcome).inc()
        result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
        self.next_offsets[partition] = offset + 1
        self.metrics.processing_seconds.observe(time.perf_counter() - started)

    def _load(self, user: str) -> UserState:
        cached = self.cache.get(user)
        if cached is not None:
            return cached
        raw = self.table.get(user.encode())
        if raw is None:
            self.new_users += 1
            return UserState()
        return UserState.from_bytes(raw)

    async def _send_dead_letter(
        self, event: EventT, invalid: Invalid, tid: str | None, minimal: bool = False
    ) -> Awaitable[Any]:
        message = event.message
        letter = dead_letter(invalid, message.key, message.value, message.topic,
                             message.partition, message.offset, minimal=minimal)  # fmt: skip
        self.metrics.invalid_events.labels(reason=invalid.code).inc()
        self.metrics.dlq_events.inc()
        fut: Awaitable[Any] = await self.app.producer.send(
            self.config.dlq_topic,
            letter.key,
            letter.value,
            None,
            None,
            letter.headers,
            transactional_id=tid,
        )
        self._track(fut, message)
        self.dead_letters.append(fut)
        return fut


_ACTIONS: dict[Decision, str] = {
    "careful": "handling it alone, an invalid one with a minimal dead letter",
    "minimal": "writing a minimal dead letter instead of processing it",
    "skip": "skipping it",
}


def batch_ranges(events: Sequence[EventT]) -> dict[tuple[str, int], tuple[int, int]]:
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
