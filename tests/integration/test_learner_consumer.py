"""The learner's librdkafka consumer against a real broker and real transactions.

What the source relies on (``learner.kafka_source``): a position past transaction
markers and aborted records, a position for a partition that holds nothing, lag against
the last stable offset while a transaction is open, and start offsets that take effect.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from learner.example_consumer import FROM_BEGINNING, ExampleConsumer, Fetched, RdKafkaConsumer
from learner.kafka_source import SourceConfig, make_consumer
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.topics import ensure_topics
from tests.support.header_keys import NOT_UTF8, RawHeaderKey

pytestmark = pytest.mark.integration


def _read(consumer: ExampleConsumer, count: int, timeout_s: float = 30.0) -> list[Fetched]:
    records: list[Fetched] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records += consumer.poll(200, 100)
    assert len(records) == count, f"read {len(records)} of {count} in {timeout_s:.0f} s"
    return records


def test_positions_and_end_offsets_follow_the_transactions(
    kafka: KafkaSettings, topic_name: Callable[[str], str]
) -> None:
    from confluent_kafka import Producer

    topic = topic_name("examples")
    ensure_topics(kafka, [topic], partitions=3)
    producer = Producer({**kafka.librdkafka(), "transactional.id": uuid.uuid4().hex})
    producer.init_transactions()
    producer.begin_transaction()  # partition 0: 3 committed (offsets 0-2, marker 3)
    for n in range(3):
        producer.produce(topic, value=b"kept %d" % n, partition=0)
    producer.produce(topic, value=b"kept on 1", partition=1)  # partition 1: offset 0, marker 1
    producer.commit_transaction()
    producer.begin_transaction()  # partition 0: 2 aborted (4-5, marker 6)
    for n in range(2):
        producer.produce(topic, value=b"aborted %d" % n, partition=0)
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()  # partition 1: 4 in a transaction left open (2-5)
    for n in range(4):
        producer.produce(topic, value=b"open %d" % n, partition=1)
    producer.flush()

    config = SourceConfig(topic=topic, group=f"consumer-{uuid.uuid4().hex[:8]}")
    consumer = make_consumer(kafka, config)
    assert isinstance(consumer, RdKafkaConsumer)
    try:
        consumer.assign({0: None, 1: None, 2: None})
        records = _read(consumer, 4)
        assert sorted(value or b"" for _, _, value, _ in records) == [
            b"kept 0", b"kept 1", b"kept 2", b"kept on 1",
        ]  # fmt: skip
        time.sleep(1.0)  # a few more fetches: nothing more is readable
        assert consumer.poll(200, 100) == []
        ends = consumer.end_offsets({0, 1, 2})
        # the last stable offset: the open transaction's records are not counted ...
        assert ends == {0: 7, 1: 2, 2: 0}
        # ... but the highwater mark of the last fetch counts them
        assert consumer.highwater(1) == 6
        # past the commit marker, the aborted records and their marker; and an empty
        # partition has a position too
        assert {p: consumer.position(p) for p in (0, 1, 2)} == ends
        consumer.commit({0: 7, 1: 2, 2: 0})

        producer.commit_transaction()
        assert len(_read(consumer, 4)) == 4  # the open ones, once committed
        assert consumer.end_offsets({1}) == {1: 7}
    finally:
        consumer.close()

    # a second consumer of the group starts where each partition is told to
    again = make_consumer(kafka, config)
    try:
        again.assign({0: FROM_BEGINNING, 1: 3, 2: None})
        records = _read(again, 3 + 3)
        assert sorted((p, o) for p, o, _, _ in records) == [
            (0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (1, 5),
        ]  # fmt: skip
    finally:
        again.close()


def test_a_header_key_that_is_not_utf8_does_not_stop_the_source(
    kafka: KafkaSettings, topic_name: Callable[[str], str]
) -> None:
    """Such a record is read from its value (as one without the label header), and the
    records after it are read too. Many of them, among records with readable headers:
    the crash this guards against came only once Python had specialised the call."""
    from kafka import KafkaProducer

    from learner.kafka_source import KafkaExampleSource
    from learner.synthetic import synthetic_examples
    from recoil.core.records import LABEL_HEADER

    topic = topic_name("examples")
    ensure_topics(kafka, [topic], partitions=1)
    examples = synthetic_examples(num_users=4, events_per_user=30, num_items=40, seed=1)
    producer = KafkaProducer(**kafka.kafka_python(), acks="all")
    for n, example in enumerate(examples):  # every third one unreadable, among good ones
        key = RawHeaderKey(NOT_UTF8) if n % 3 == 0 else LABEL_HEADER
        producer.send(topic, value=example.to_json(), headers=[(key, example.label_json())])
    producer.flush()
    producer.close()
    config = SourceConfig(topic=topic, group=f"headers-{uuid.uuid4().hex[:8]}")
    consumer = make_consumer(kafka, config)
    assert isinstance(consumer, RdKafkaConsumer)
    source = KafkaExampleSource(consumer, config, label_only={"skip"})
    taken: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while len(taken) < len(examples) and time.monotonic() < deadline:
            taken += [e.event_id for e in source.next_batch().examples]
    finally:
        source.close()
    assert taken == [e.event_id for e in examples]
    assert consumer.unreadable_headers == len(range(0, len(examples), 3))  # each counted once


def test_a_poll_returns_what_is_ready_without_waiting_for_a_whole_batch(
    kafka: KafkaSettings, topic_name: Callable[[str], str]
) -> None:
    """Asked for 2,048 records with a minute to wait, a poll hands over the few that are
    there as soon as one is, and a poll with nothing there waits (to its timeout) for
    the first. librdkafka's own ``consume(n, timeout)`` waits until n are ready: asked for
    a whole batch, the learner sat out the timeout on every short fetch."""
    from confluent_kafka import Producer

    topic = topic_name("examples")
    ensure_topics(kafka, [topic], partitions=1)
    config = SourceConfig(topic=topic, group=f"ready-{uuid.uuid4().hex[:8]}")
    consumer = make_consumer(kafka, config)
    assert isinstance(consumer, RdKafkaConsumer)
    producer = Producer(kafka.librdkafka())
    try:
        consumer.assign({0: FROM_BEGINNING})
        assert consumer.poll(300, 2048) == []  # nothing there: it waited, and says so
        for n in range(5):
            producer.produce(topic, value=b"ready %d" % n, partition=0)
        producer.flush()
        records: list[Fetched] = []
        started = time.monotonic()
        while len(records) < 5 and time.monotonic() - started < 60:
            records += consumer.poll(60_000, 2048)
        waited = time.monotonic() - started
        assert [value for _, _, value, _ in records] == [b"ready %d" % n for n in range(5)]
        # a poll that waited for 2,048 records would have returned after its minute
        assert waited < 30, f"the polls took {waited:.1f} s for 5 ready records"
    finally:
        consumer.close()
