"""The learner's Kafka consumer: librdkafka (confluent-kafka) behind the few calls the
example source makes (``ExampleConsumer``), with partitions as plain ints of one topic.

Why librdkafka and not kafka-python, which the rest of the project uses for admin work
and small producers: kafka-python parses every record in Python. On training-example
records as the workers write them (~2 KB, two headers, batches of ~8 records) it spent
40-46 µs of CPU a record, against 8-10 µs for librdkafka, all threads counted
(``python scripts/fetch_cost.py 40000``, two runs each). In ``recoil bench pipeline`` the
learner then spent 23-44 µs less CPU an example, 9-16% (docs/streams.md, "The learner's
consumer").

The source decides where each partition starts; this adapter applies it the way
librdkafka wants, as offsets in the assignment itself (a seek inside the rebalance
callback is an error there), and reports the read_committed end offset (the last stable
offset) for lag, as kafka-python's ``end_offsets`` did.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol, cast

from recoil.core.log_throttle import worth_logging

log = logging.getLogger(__name__)

FROM_BEGINNING = -2  # a start offset: the partition's first retained record (librdkafka's)

# (partition, offset, value, headers) of one fetched record
Fetched = tuple[int, int, bytes | None, list[tuple[str, bytes]] | None]


class CommitFailedError(Exception):
    """Kafka refused an offset commit (a rebalance, a fenced member, a broker error)."""


class ExampleConsumer(Protocol):
    """What ``learner.kafka_source.KafkaExampleSource`` needs of a consumer of one topic."""

    def subscribe(
        self,
        on_assigned: Callable[[list[int]], Mapping[int, int]],
        on_revoked: Callable[[set[int]], None],
    ) -> None:
        """Join the group; ``on_assigned`` returns where assigned partitions start (an
        offset or ``FROM_BEGINNING``; a partition left out starts at its committed
        offset, or the earliest without one)."""

    def unsubscribe(self) -> None: ...

    def assign(self, start: Mapping[int, int | None]) -> None:
        """Read these partitions without the group's assignment (None: the committed
        offset, or the earliest)."""

    def poll(self, timeout_ms: int, max_records: int) -> list[Fetched]: ...

    def assignment(self) -> set[int]: ...

    def partitions(self) -> set[int]:
        """The topic's partitions (empty while unknown)."""

    def highwater(self, partition: int) -> int | None:
        """The partition's highwater mark from the last fetch (no round trip); None
        before one. An open transaction's records count in it."""

    def position(self, partition: int) -> int | None:
        """The offset after the last record returned, past transaction markers and
        aborted records (the end of a partition that retains none); None when unknown."""

    def end_offsets(self, partitions: Collection[int]) -> dict[int, int]:
        """The read_committed end offsets (a round trip); partitions that did not
        answer are left out."""

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit synchronously; ``CommitFailedError`` if Kafka refused."""

    def close(self) -> None: ...


class RdKafkaConsumer:
    """``ExampleConsumer`` over a ``confluent_kafka.Consumer`` (classic group protocol,
    eager rebalances: ``on_revoked`` always sees every held partition)."""

    def __init__(
        self,
        topic: str,
        connection: Mapping[str, Any],
        group: Mapping[str, Any],
        metadata_max_age_s: float = 30.0,
    ) -> None:
        """``connection``: where and how to connect (``KafkaSettings.librdkafka()``);
        ``group``: the consumer's own properties."""
        from confluent_kafka import Consumer

        self.topic = topic
        self.unreadable_headers = 0  # records whose headers could not be read
        logger = logging.getLogger("librdkafka")
        self._consumer = Consumer({**connection, **group, "logger": logger})
        # End offsets are asked on a connection of their own: on the consumer's, a
        # request waits behind the fetch long-poll of each partition's broker (up to
        # fetch.wait.max.ms, 500 ms, a partition: up to ~2 s for four, by that setting;
        # py-spy found the learner's main thread waiting there; alone it trained 631
        # examples/s, ~3,000 once the requests moved: docs/streams.md)
        self._admin_properties = {**connection, "logger": logger}
        self._admin: Any = None
        self._metadata_max_age_s = metadata_max_age_s
        self._partitions: set[int] = set()
        self._partitions_at = -float("inf")

    def _tp(self, partition: int, offset: int | None = None) -> Any:
        from confluent_kafka import OFFSET_INVALID, TopicPartition

        return TopicPartition(self.topic, partition, OFFSET_INVALID if offset is None else offset)

    def subscribe(
        self,
        on_assigned: Callable[[list[int]], Mapping[int, int]],
        on_revoked: Callable[[set[int]], None],
    ) -> None:
        def assign(consumer: Any, tps: list[Any]) -> None:
            start = on_assigned(sorted(tp.partition for tp in tps))
            consumer.assign([self._tp(tp.partition, start.get(tp.partition)) for tp in tps])

        def revoke(consumer: Any, tps: list[Any]) -> None:
            on_revoked({tp.partition for tp in tps})
            consumer.unassign()

        self._consumer.subscribe([self.topic], on_assign=assign, on_revoke=revoke, on_lost=revoke)

    def unsubscribe(self) -> None:
        self._consumer.unsubscribe()

    def assign(self, start: Mapping[int, int | None]) -> None:
        committed = self._committed([p for p, offset in start.items() if offset is None])
        self._consumer.assign(
            [
                self._tp(p, offset if offset is not None else committed.get(p, FROM_BEGINNING))
                for p, offset in sorted(start.items())
            ]
        )  # no committed offset: the earliest, as auto.offset.reset says

    def _committed(self, partitions: list[int], timeout_s: float = 60.0) -> dict[int, int]:
        """The group's committed offsets of ``partitions``, asked until the coordinator
        answers. Left to librdkafka (an assignment at ``OFFSET_STORED``), a first answer
        of NOT_COORDINATOR (a group's coordinator still loading) was not retried and the
        partitions were never fetched (seen once in a test against the embedded broker)."""
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + timeout_s
        while partitions:
            try:
                tps = self._consumer.committed([self._tp(p) for p in partitions], timeout=10)
                errors = [tp.error for tp in tps if tp.error is not None]
                if not errors:
                    return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
                problem: object = errors[0]
            except KafkaException as exc:
                problem = exc
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no committed offsets of {self.topic} for {timeout_s:.0f} s: {problem}"
                )
            log.warning("committed offsets of %s (asking again): %s", self.topic, problem)
            time.sleep(0.5)
        return {}

    def poll(self, timeout_ms: int, max_records: int) -> list[Fetched]:
        from confluent_kafka import KafkaException

        fetched: list[Fetched] = []
        for message in self._ready(timeout_ms, max_records):
            error = message.error()
            if error is None:
                # a message without an error has its partition, offset and list of headers
                headers = self._headers(message)
                record = (message.partition(), message.offset(), message.value(), headers)
                fetched.append(cast(Fetched, record))
            elif error.fatal():
                raise KafkaException(error)
            else:  # transient (a broker restart, a timed-out fetch): librdkafka retries
                log.warning("consumer: %s", error)
        return fetched

    def _ready(self, timeout_ms: int, max_records: int) -> list[Any]:
        """Up to ``max_records`` messages: those ready now, else the first to come within
        ``timeout_ms`` and any ready with it. librdkafka's ``consume(n, timeout)`` waits
        until ``n`` messages are ready or the timeout passes, so asking it for a whole
        batch sat out the timeout whenever the fetched queue held fewer (five records and
        a poll for 2,048 with a minute to wait took the minute). kafka-python's ``poll``,
        which this replaced, returned what was ready."""
        messages = self._consumer.consume(max_records, 0)
        if messages or timeout_ms <= 0:
            return cast(list[Any], messages)
        first = self._consumer.consume(1, timeout_ms / 1000)
        if not first or max_records == 1:
            return cast(list[Any], first)
        return cast(list[Any], first + self._consumer.consume(max_records - 1, 0))

    def _headers(self, message: Any) -> list[tuple[str, bytes]] | None:
        """The message's headers; None (the value is then read whole) when they cannot
        be read (``_headers``), with a warning for the first 20 such records and every
        1,000th."""
        try:
            return _headers(message)
        except SystemError as exc:
            self.unreadable_headers += 1
            if worth_logging(self.unreadable_headers):
                log.warning(
                    "%s[%d]@%d: headers unreadable, reading the value alone (%d so far): %s",
                    message.topic(), message.partition(), message.offset(),
                    self.unreadable_headers, exc.__cause__ or exc,
                )  # fmt: skip
            return None

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self._consumer.assignment()}

    def partitions(self) -> set[int]:
        now = time.monotonic()
        if not self._partitions or now - self._partitions_at >= self._metadata_max_age_s:
            metadata = self._consumer.list_topics(self.topic, timeout=10)
            topic = metadata.topics.get(self.topic)
            self._partitions = set(topic.partitions) if topic and not topic.error else set()
            self._partitions_at = now
        return set(self._partitions)

    def _fetched_marks(self, partition: int) -> tuple[int, int] | None:
        """(low, high) watermarks from the last fetch response (no round trip)."""
        marks = self._consumer.get_watermark_offsets(self._tp(partition), cached=True)
        return (marks[0], marks[1]) if marks and marks[1] >= 0 else None

    def highwater(self, partition: int) -> int | None:
        marks = self._fetched_marks(partition)
        return marks[1] if marks else None

    def position(self, partition: int) -> int | None:
        (tp,) = self._consumer.position([self._tp(partition)])
        if tp.offset >= 0:
            return int(tp.offset)
        # librdkafka has no position before it returns a record (aborted ones and
        # markers count); a partition that retains nothing still has one: its end
        marks = self._fetched_marks(partition)
        return marks[1] if marks and marks[0] == marks[1] else None

    def end_offsets(self, partitions: Collection[int]) -> dict[int, int]:
        from confluent_kafka import IsolationLevel, KafkaException
        from confluent_kafka.admin import AdminClient, OffsetSpec

        if self._admin is None:
            self._admin = AdminClient(self._admin_properties)
        futures = self._admin.list_offsets(
            {self._tp(p): OffsetSpec.latest() for p in partitions},
            isolation_level=IsolationLevel.READ_COMMITTED,  # the last stable offset
            request_timeout=5,
        )
        ends: dict[int, int] = {}
        for tp, future in futures.items():
            try:
                ends[tp.partition] = int(future.result().offset)
            except KafkaException as exc:
                log.warning("end offset of %s[%d]: %s", self.topic, tp.partition, exc)
        return ends

    def commit(self, offsets: Mapping[int, int]) -> None:
        from confluent_kafka import KafkaException

        try:
            self._consumer.commit(
                offsets=[self._tp(p, o) for p, o in sorted(offsets.items())], asynchronous=False
            )
        except KafkaException as exc:
            raise CommitFailedError(str(exc)) from exc

    def close(self) -> None:
        self._consumer.close()


# Called through the C API, which checks what a C function returns: a plain
# ``message.headers()`` is a call that Python 3.11's specialising interpreter turns into
# a direct one without that check (see ``_headers``).
_read_headers = operator.methodcaller("headers")


def _headers(message: Any) -> list[tuple[str, bytes]] | None:
    """The message's headers. A header key that is not UTF-8 (Kafka's protocol says it
    must be; the broker does not check) makes confluent-kafka 2.16 build a list holding a
    tuple with a NULL item and return it with the decoding error pending. Through the
    checked call that is a ``SystemError``; through a specialised direct call it was
    returned as a list, and iterating it crashed the process (a segfault in the test of
    such a record)."""
    return cast(list[tuple[str, bytes]] | None, _read_headers(message))
