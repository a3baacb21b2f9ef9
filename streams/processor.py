"""One agent batch: decode, advance user states, send examples, dead letters and state.

The agent hands each batch of input events here; everything Faust-specific
that needs care lives in this one place, in this order:

1. Hold the consumer's batch barrier, so no commit falls inside the batch.
2. Per event: decode and validate (:func:`recoil.events.parse_event`); an
   invalid one becomes a dead letter (:mod:`streams.dlq`). A valid one
   advances its user's state (:func:`streams.state.advance`); a labelled one
   sends its training example. Sends are queued, not awaited one by one.
3. At-least-once only: wait until the examples and dead letters are
   acknowledged by the broker *before* the table records the events as seen;
   a crash in between then repeats examples rather than losing them.
4. Write each touched user's state once (table + changelog, explicit partition).

In exactly-once mode every send of a batch goes into the transaction of the
input partition it came from (Faust names it ``{app_id}-{group}-{partition}``),
whatever partition of the output topic the record lands in; the transaction
commits together with the input offsets, so examples, dead letters, table
changes and progress become visible together or not at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from faust.streams import _current_event
from faust.types import TP, EventT

from recoil.events import InteractionEvent, Invalid, parse_event
from streams.config import StreamsConfig
from streams.consumer import RecoilConsumer
from streams.continuity import OffsetContinuity
from streams.dlq import dlq_headers
from streams.metrics import StreamMetrics
from streams.state import Outcome, UserState, advance
from streams.supervisor import EXIT_SEND_FAILED
from streams.table import HistoryTable

log = logging.getLogger(__name__)

REREAD_TIMEOUT = 5.0  # seconds before a re-read that has not come back is sought again


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
        except Exception as exc:  # a send failed: the producer cannot be trusted any more
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
        log.critical("send failed; exiting without committing: %r", exc, exc_info=exc)
        self.on_fatal(exc)

    def _on_delivery(self, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None and self.failed_send is None:
            self.failed_send = fut.exception()

    async def _process(self, events: Sequence[EventT], result: BatchResult) -> None:
        pending: dict[str, tuple[UserState, EventT]] = {}
        deliveries: list[Awaitable[Any]] = []
        labels, window = self.config.labels, self.config.dedupe_window
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
            parsed = parse_event(message.value if message.value is not None else b"")
            if isinstance(parsed, InteractionEvent):
                problem = check_key(message.key, parsed)
                if problem is not None:
                    parsed = problem
            if isinstance(parsed, Invalid):
                deliveries.append(await self._send_dead_letter(event, parsed, tid))
                result.dead_letters += 1
                outcome: Outcome = "invalid"
            else:
                token = _current_event.set(weakref.ref(event))  # the table's partition
                user = parsed.user_id
                try:
                    state = pending[user][0] if user in pending else self._load(user)
                    step = advance(state, parsed, labels, window)
                except Exception as exc:  # a bug or a corrupt stored state: park the event
                    log.exception("processing %s failed; sent to the DLQ", parsed.event_id)
                    problem = Invalid("processing_error", f"{type(exc).__name__}: {exc}")
                    deliveries.append(await self._send_dead_letter(event, problem, tid))
                    result.dead_letters += 1
                    self._count(result, "invalid", message.partition, message.offset, started)
                    continue
                finally:
                    _current_event.reset(token)
                if step.state is not state:
                    pending[user] = (step.state, event)
                outcome = step.outcome
                if step.example is not None:
                    deliveries.append(
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
                    self.metrics.training_examples.labels(kind=step.example.label_kind).inc()
                    result.examples += 1
            self._count(result, outcome, message.partition, message.offset, started)
        if self.config.exactly_once:
            # The transaction makes waiting unnecessary, but a refused send must not go
            # unnoticed: the next batch checks (see _on_delivery).
            for delivery in deliveries:
                cast("asyncio.Future[Any]", delivery).add_done_callback(self._on_delivery)
        elif deliveries:
            await asyncio.gather(*deliveries)
        cache, limit = self.cache, self.config.state_cache_users
        for user, (state, event) in pending.items():
            tid = self.transactional_id(event.message.partition)
            written = await self.table.put(user.encode(), state.to_bytes(), event, tid)
            written.add_done_callback(self._on_delivery)
            cache[user] = state
            cache.move_to_end(user)
        while len(cache) > limit:
            cache.popitem(last=False)

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
        self, event: EventT, invalid: Invalid, tid: str | None
    ) -> Awaitable[Any]:
        message = event.message
        self.metrics.invalid_events.labels(reason=invalid.code).inc()
        self.metrics.dlq_events.inc()
        fut: Awaitable[Any] = await self.app.producer.send(
            self.config.dlq_topic,
            message.key,
            message.value,
            None,
            None,
            dlq_headers(invalid, message.topic, message.partition, message.offset),
            transactional_id=tid,
        )
        return fut


def _exit_now(exc: BaseException) -> None:
    logging.shutdown()
    os._exit(EXIT_SEND_FAILED)
