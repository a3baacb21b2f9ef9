"""Training examples from Kafka, in mini-batches that know the offsets they end at.

Reads through an ``ExampleConsumer`` (passed in; ``make_consumer`` builds the
librdkafka one, ``learner.example_consumer``) in a consumer group, with auto-commit off
and ``isolation.level=read_committed`` (only examples of committed transactions).

Batches: ``next_batch`` returns as soon as ``batch_size`` examples are ready
(``catch_up_batch_size`` when at least that many are fetched or, by the partitions'
highwater marks, waiting on the broker: a backlog trains in larger steps, which cost
less per example on a CPU; such a step stops at ``batch_size`` or more when a poll
brings nothing),
or once the first example of a short batch has waited ``batch_timeout_s``
(low traffic still trains, with bounded delay), or with no examples at all
after ``idle_tick_s`` (so the trainer can publish, report and stop while the
topic is quiet). Each batch carries ``offsets``: partition -> the offset after
the last record it covers, for every partition seen so far. Committing those
offsets after the step that trained the batch, and storing them in
checkpoints, is the trainer's job; on (re)assignment the source seeks every
partition it has an offset for (from a checkpoint, or from batches already
taken), so a restart resumes exactly where the checkpoint's model left off.

Partitions: subscribed through the consumer group (one learner process), or
``partitions`` assigned (one rank of N: ``learner.distributed`` says which and
why); either way offsets are committed under the group.

Duplicates: the streams side is at-least-once, so the same ``event_id`` can
arrive twice; the source drops ids it has already put into a batch (the last
``dedupe_window`` ids are remembered; the trainer checkpoints them too).
Records of kinds the arm does not train (``label_only``; a skip, for the default arm:
most records) are read from their ``LABEL_HEADER`` alone, the example without its
history: they still count, advance offsets, are de-duplicated and bring their label
item into the vocabulary, but their value (a 50-item history as JSON, ~2 KB) is never
parsed or batched: 14-24 µs less for each such record, measured from memory
(docs/streams.md, "The label header"). Such a record's value is not checked either. A
record without the header, or whose header is not a valid example, is read whole.
Records training cannot take (oversized, undecodable, invalid: see
``learner.example_check``) are logged and skipped, counted by reason in each
batch's ``skipped``; their offsets still advance, so one bad record never stops
or stalls the learner.

Not starving the consumer: the consumer is polled only between training
steps, so ``max_poll_interval_ms`` must exceed the longest gap between polls:
one step plus a snapshot publish (seconds). The default (10 minutes) leaves a
wide margin; group heartbeats run on librdkafka's background threads, so
``session_timeout_ms`` is independent of step time.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from learner.example_check import ExampleDecoder, Skipped
from learner.example_consumer import (
    FROM_BEGINNING,
    CommitFailedError,
    ExampleConsumer,
    Fetched,
    RdKafkaConsumer,
)
from recoil.core.checks import check_finite
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.log_throttle import worth_logging
from recoil.core.records import LABEL_HEADER, TrainingExample
from recoil.core.settings import setting
from recoil.core.topics import TRAINING_EXAMPLES, topic_name_problem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceConfig:
    """Where examples come from and how they are batched."""

    topic: str = setting(TRAINING_EXAMPLES, "training examples topic")  # streams/ writes it
    # committed offsets are shared by restarts
    group: str = setting("recoil-learner", "Kafka consumer group")
    batch_size: int = setting(256, "examples per step")  # when traffic allows
    # a backlog trains in larger steps: cheaper per example on CPU (docs/streams.md)
    catch_up_batch_size: int = setting(
        1024,
        "examples per step while at least this many are waiting (fetched, or on the "
        "broker by the highwater marks: a backlog); otherwise --batch-size (the larger of "
        "the two applies)",
    )
    # a short batch is trained once its first example waited this long
    batch_timeout_s: float = setting(
        0.5, "seconds a short batch waits for more examples before training", flag="--batch-timeout"
    )
    idle_tick_s: float = 1.0  # with nothing to train, return an empty batch this often
    poll_timeout_ms: int = 100  # longest single poll; bounds the reaction to a stop request
    max_poll_records: int = 2048  # records per poll; the buffer never holds more
    max_poll_interval_ms: int = 600_000  # must outlast a step + a snapshot publish (see above)
    session_timeout_ms: int = 30_000  # heartbeats come from a background thread
    # static membership: see make_consumer; None: dynamic
    instance_id: str | None = setting(
        "learner-0",
        "static group membership id: a restart takes its partitions back at once "
        "('' = dynamic membership)",
        empty_is_none=True,
    )
    # one learner per group holds every partition; fewer for this long means a join went wrong
    rejoin_after_s: float = setting(
        60.0,
        "seconds a subscribed learner may hold fewer partitions than its topic has before it "
        "rejoins the group (one learner per group is the design; 0 = never)",
        flag="--rejoin-after",
    )
    # Kafka clients' default is 5 minutes: partitions added to the topic went unread so long
    metadata_max_age_ms: int = setting(
        30_000,
        "milliseconds between metadata refreshes: partitions added to the topic are joined "
        "and read within about this long",
    )
    dedupe_window: int = 100_000  # event ids remembered to drop re-deliveries
    lag_refresh_s: float = 2.0  # end offsets (a broker round trip) are fetched at most this often
    # larger records are skipped undecoded (Kafka's default cap)
    max_example_bytes: int = setting(
        1 << 20, "skip (and count) training-example records larger than this"
    )
    max_history_items: int = 1000  # longer histories are skipped (workers keep 50 by default)

    def __post_init__(self) -> None:
        problem = topic_name_problem(self.topic)
        if problem:
            raise ValueError(f"topic {self.topic!r}: {problem}")
        if not self.group.strip():  # librdkafka aborts the process on a blank one
            raise ValueError(f"group must not be empty or blank, got {self.group!r}")
        if self.instance_id == "":
            raise ValueError("instance_id must not be empty (None: dynamic membership)")
        for name in (
            "batch_size", "catch_up_batch_size", "poll_timeout_ms", "max_poll_records",
            "max_poll_interval_ms", "session_timeout_ms", "dedupe_window", "max_example_bytes",
            "max_history_items",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("batch_timeout_s", "idle_tick_s", "lag_refresh_s"):
            check_finite(name, getattr(self, name), "> 0", "a finite number of seconds")
        check_finite(
            "rejoin_after_s",
            self.rejoin_after_s,
            ">= 0",
            "a finite number of seconds",
            "(0 = never)",
        )
        if self.metadata_max_age_ms < 100:
            raise ValueError(
                f"metadata_max_age_ms must be >= 100 (a metadata request each time), "
                f"got {self.metadata_max_age_ms}"
            )


@dataclass(frozen=True)
class RawBatch:
    """Decoded, de-duplicated examples and the offsets the batch ends at."""

    examples: tuple[TrainingExample, ...]
    offsets: dict[int, int]  # partition -> next offset, for every partition seen so far
    duplicates: int  # records dropped because their event_id was already taken
    invalid: int  # records skipped, whatever the reason (the sum of ``skipped``)
    skipped: dict[str, int] = field(default_factory=dict)  # SkipReason -> records skipped


class SeenIds:
    """The last ``capacity`` event ids, in arrival order (a bounded ordered set)."""

    def __init__(self, capacity: int, ids: Iterable[str] = ()) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        for event_id in ids:
            self.add(event_id)

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; False if it was already remembered."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)


def topic_partitions(consumer: ExampleConsumer, topic: str, timeout_s: float = 30.0) -> list[int]:
    """The partitions of ``topic``, the consumer's (waiting for metadata up to ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        partitions = consumer.partitions()
        if partitions:
            return sorted(partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"no metadata for topic {topic!r} after {timeout_s:.0f}s")
        time.sleep(0.2)


def make_consumer(settings: KafkaSettings, config: SourceConfig) -> ExampleConsumer:
    """A librdkafka consumer configured as the module docstring says (not subscribed).

    With ``instance_id`` the consumer is a static group member: a learner restarted
    after a crash takes its partitions back at once, where a dynamic member would
    wait ``session_timeout_ms`` for the dead one to expire. Two learners with the same
    instance id fence each other (one learner per group is the design).
    """
    properties: dict[str, Any] = {
        "group.id": config.group,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",  # a new group trains on everything retained
        "max.poll.interval.ms": config.max_poll_interval_ms,
        "session.timeout.ms": config.session_timeout_ms,
        "topic.metadata.refresh.interval.ms": config.metadata_max_age_ms,
        "client.id": "recoil-learner",
    }
    if config.instance_id is not None:
        properties["group.instance.id"] = config.instance_id
    return RdKafkaConsumer(
        config.topic, settings.librdkafka(), properties, config.metadata_max_age_ms / 1000
    )


class KafkaExampleSource:
    """Batches of training examples from a subscribed consumer (one thread only)."""

    def __init__(
        self,
        consumer: ExampleConsumer,
        config: SourceConfig,
        start_offsets: Mapping[int, int] | None = None,
        seen_ids: Iterable[str] = (),
        from_beginning: bool = False,
        clock: Callable[[], float] = time.monotonic,
        partitions: Sequence[int] | None = None,
        label_only: Collection[str] = (),
    ) -> None:
        """``label_only``: label kinds whose records are read from their ``LABEL_HEADER``
        alone (the kinds the arm does not train; see the module docstring)."""
        self.consumer = consumer
        self.config = config
        self.seen = SeenIds(config.dedupe_window, seen_ids)
        self._next: dict[int, int] = dict(start_offsets or {})  # partition -> next offset to take
        self._from_beginning = from_beginning
        self._buffer: deque[Fetched] = deque()
        self._label_only = frozenset(label_only)
        self._clock = clock
        self._end_offsets = EndOffsets(consumer.end_offsets, config.lag_refresh_s, clock)
        self._invalid_logged = 0
        self._decode_value = ExampleDecoder(config.max_example_bytes, config.max_history_items)
        self._fixed = partitions is not None  # assigned, not subscribed: may hold none
        self._short_since: float | None = None  # when it began to hold fewer than all
        self.rejoins = 0  # group rejoins the source forced (see _check_assignment)
        if partitions is not None:
            start: dict[int, int | None] = {p: None for p in partitions}
            consumer.assign(start | self._on_assigned(sorted(partitions)))
            return
        self._subscribe()

    def _subscribe(self) -> None:
        self.consumer.subscribe(self._on_assigned, self._on_revoked)

    def _on_assigned(self, assigned: list[int]) -> dict[int, int]:
        """Where the assigned partitions start: where this source left off, or the
        beginning for the others if ``from_beginning`` (else their committed offsets)."""
        start = {p: self._next[p] for p in assigned if p in self._next}
        fresh = [p for p in assigned if p not in self._next] if self._from_beginning else []
        start |= dict.fromkeys(fresh, FROM_BEGINNING)
        log.info(
            "assigned partitions %s of %s; resuming at %s%s",
            sorted(assigned),
            self.config.topic,
            {p: o for p, o in sorted(self._next.items())},
            f", partitions {sorted(fresh)} from the beginning" if fresh else "",
        )  # fmt: skip
        return start

    def _on_revoked(self, partitions: set[int]) -> None:
        # Records not yet in a batch are re-read by whoever gets the partition next.
        self._buffer = deque(r for r in self._buffer if r[0] not in partitions)

    def next_batch(self, should_stop: Callable[[], bool] = lambda: False) -> RawBatch:
        """The next batch (see module docstring for when it returns); may be empty."""
        config = self.config
        examples: list[TrainingExample] = []
        duplicates = 0
        skipped: dict[str, int] = {}
        started = self._clock()
        first_at: float | None = None
        # a backlog: one larger step (the step costs less per example)
        catch_up = max(config.catch_up_batch_size, config.batch_size)
        size = catch_up if self._waiting() >= catch_up else config.batch_size
        starved = False  # the last poll brought nothing
        while True:
            while self._buffer and len(examples) < size:
                partition, offset, value, headers = self._buffer.popleft()
                self._next[partition] = offset + 1
                example = self._decode(partition, offset, value, headers)
                if isinstance(example, Skipped):
                    skipped[example.reason] = skipped.get(example.reason, 0) + 1
                elif not self.seen.add(example.event_id):
                    duplicates += 1
                else:
                    examples.append(example)
                    first_at = first_at if first_at is not None else self._clock()
            now = self._clock()
            if len(examples) >= size or should_stop():
                break
            # a catch-up step never waits for records that are not readable yet (an open
            # transaction counts in the highwater mark) once a normal batch is ready
            if starved and len(examples) >= config.batch_size:
                break
            if first_at is not None and now - first_at >= config.batch_timeout_s:
                break
            if first_at is None and now - started >= config.idle_tick_s:
                break
            deadline = (
                (first_at + config.batch_timeout_s)
                if first_at is not None
                else (started + config.idle_tick_s)
            )
            wait_ms = max(1, min(config.poll_timeout_ms, int((deadline - now) * 1000) + 1))
            starved = self._poll(wait_ms) == 0
        if not self._buffer:
            self._skip_to_positions()
        self._check_assignment()
        invalid = sum(skipped.values())
        return RawBatch(tuple(examples), dict(self._next), duplicates, invalid, skipped)

    def _poll(self, timeout_ms: int) -> int:
        """Fetched records into the buffer; how many came."""
        records = self.consumer.poll(timeout_ms, self.config.max_poll_records)
        self._buffer.extend(records)
        return len(records)

    def _waiting(self) -> int:
        """Records known to wait: the buffer, or what the partitions' highwater marks (from
        the last fetch responses, no round trip) say lies past the offsets taken. A fetch
        holds ~1 MiB per partition, a few hundred examples: counting the buffer alone, a
        backlog of 80k examples still trained mostly in steps of ``batch_size``."""
        behind = 0
        for partition in self.consumer.assignment():
            high = self.consumer.highwater(partition)
            taken = self._next.get(partition)
            if high is not None and taken is not None:
                behind += max(0, high - taken)
        return max(len(self._buffer), behind)

    def _check_assignment(self) -> None:
        """Rejoin the group once this subscribed learner has held fewer partitions than its
        topic has for ``rejoin_after_s``: a safety net for a join that lost its
        assignment (kafka-python, the learner's client before librdkafka, did so in 2 of 20
        partition additions and 3 of 30 fresh groups, measured), after which the new
        partitions are never read. Leaving and subscribing again starts a clean join; the
        instance id takes the member's place at once."""
        if self._fixed or not self.config.rejoin_after_s:
            return
        known = self.consumer.partitions()
        held = self.consumer.assignment()
        if not known or held >= known:
            self._short_since = None
            return
        now = self._clock()
        if self._short_since is None:
            self._short_since = now
            return
        if now - self._short_since < self.config.rejoin_after_s:
            return
        log.warning(
            "held partitions %s of the %d of %s for %.0f s: rejoining group %r",
            sorted(held), len(known), self.config.topic, now - self._short_since,
            self.config.group,
        )  # fmt: skip
        self._short_since = None
        self.rejoins += 1
        self._buffer.clear()  # re-read from self._next once the partitions are back
        self.consumer.unsubscribe()
        self._subscribe()

    def _skip_to_positions(self) -> None:
        """With nothing buffered, every record before the consumer's position is handled:
        move past transaction markers and aborted records so commits and lag reach the end,
        and give partitions that never had a record an offset too."""
        for partition in self.consumer.assignment():
            position = self.consumer.position(partition)
            if position is not None and position > self._next.get(partition, -1):
                self._next[partition] = position

    def _decode(
        self,
        partition: int,
        offset: int,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes]] | None,
    ) -> TrainingExample | Skipped:
        config = self.config
        label = self._from_label(headers) if self._label_only and headers else None
        result = label if label is not None else self._decode_value(value)
        if isinstance(result, Skipped):
            self._invalid_logged += 1
            if worth_logging(self._invalid_logged):
                log.warning(
                    "skipping %s training example %s[%d]@%d (%d skipped so far): %s",
                    result.reason, config.topic, partition, offset, self._invalid_logged,
                    result.detail,
                )  # fmt: skip
        return result

    def _from_label(self, headers: Iterable[tuple[str, bytes]]) -> TrainingExample | None:
        """The example of a ``label_only`` kind in ``LABEL_HEADER``, without its history;
        None when the value must be read (no header, a trained kind, a bad header)."""
        for key, label in headers:
            if key == LABEL_HEADER:
                example = self._decode_value(label)
                if isinstance(example, TrainingExample) and example.label_kind in self._label_only:
                    return example
                return None
        return None

    def assigned(self) -> bool:
        """Whether the group has given this consumer any partitions yet (an assigned
        rank has its share from the start, even an empty one)."""
        return self._fixed or bool(self.consumer.assignment())

    def held_partitions(self) -> int:
        """How many partitions this consumer holds now."""
        return len(self.consumer.assignment())

    def commit(self, offsets: Mapping[int, int]) -> bool:
        """Commit ``offsets`` for the partitions this consumer holds; False if Kafka refused
        (a rebalance: the checkpointed offsets remain the source of truth)."""
        held = self.consumer.assignment()
        wanted = {p: o for p, o in offsets.items() if p in held}
        if not wanted:
            return True
        try:
            self.consumer.commit(wanted)
        except CommitFailedError as exc:
            log.warning("offset commit failed (will retry with the next step): %s", exc)
            return False
        return True

    def lag(self, trained: Mapping[int, int]) -> dict[int, int]:
        """Messages per assigned partition not yet trained on (end offset - trained offset);
        only partitions held now (none: empty, not the last values seen)."""
        ends = self._end_offsets.current(self.consumer.assignment())
        return {p: max(0, end - trained.get(p, 0)) for p, end in ends.items()}

    def close(self) -> None:
        self._end_offsets.close()
        self.consumer.close()


class EndOffsets:
    """The held partitions' read_committed end offsets, for lag, refreshed every
    ``every_s`` on a thread of their own. The ask is a broker round trip: on the
    training thread it held the learner for 3 s of one 22 s ``recoil bench pipeline``
    run (py-spy; ~250 ms an ask on the busy broker), 0.01 s of another. A refresh's answer
    is read at the
    next call after it comes, so lag is at most one refresh late. After a rebalance (the
    held partitions differ from those last answered) the ask is made at once and waited
    for: lag covers the partitions held now, never the last ones seen."""

    def __init__(
        self,
        ask: Callable[[set[int]], dict[int, int]],
        every_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ask = ask
        self._every_s = every_s
        self._clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[dict[int, int]] | None = None
        self._asked_at = -float("inf")
        self._values: dict[int, int] = {}

    def current(self, held: set[int]) -> dict[int, int]:
        """The end offsets known for ``held`` (asking again when due)."""
        if self._pending is not None and self._pending.done():
            self._take()
        now = self._clock()
        if held != self._values.keys():
            self._wait()
            self._values = self._ask(held) if held else {}
            self._asked_at = now
        elif held and self._pending is None and now - self._asked_at >= self._every_s:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="end-offsets")
            self._pending = self._pool.submit(self._ask, set(held))
            self._asked_at = now
        return self._values

    def _take(self) -> None:
        assert self._pending is not None
        pending, self._pending = self._pending, None
        try:
            self._values = pending.result()
        except Exception as exc:  # a failed ask keeps the last answer; the next one may do
            log.warning("end offsets for lag (keeping the last ones): %s", exc)

    def _wait(self) -> None:
        if self._pending is not None:
            self._take()  # its result() waits for it

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
