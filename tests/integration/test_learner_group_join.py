"""A subscribed learner gets every partition in its first group join.

Real broker, real kafka-python consumer. A consumer that joins before it has the
topic's metadata is first assigned nothing; the metadata that arrives next triggers a
second join, and kafka-python 3.0.12 can lose that join's assignment when a poll times
out mid-join (the learner then trained on nothing, with lag 0, for good: 3 of 30 fresh
groups, measured). ``KafkaExampleSource`` fetches the metadata after subscribing, so
the first join is complete and there is no second one to lose.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from learner.kafka_source import KafkaExampleSource, SourceConfig, make_consumer
from learner.synthetic import synthetic_examples
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.topics import ensure_topics

pytestmark = pytest.mark.integration

PARTITIONS = 4


def test_first_assignment_of_a_fresh_group_holds_every_partition(
    kafka: KafkaSettings, topic_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    topic = topic_name("examples")
    ensure_topics(kafka, [topic], partitions=PARTITIONS)
    caplog.set_level(logging.INFO, logger="learner.kafka_source")
    for attempt in range(3):  # each a fresh group, as a new arm's learner is
        caplog.clear()
        config = SourceConfig(topic=topic, group=f"join-{uuid.uuid4().hex[:8]}")
        source = KafkaExampleSource(make_consumer(kafka, config), config)
        try:
            deadline = time.monotonic() + 30
            while not source.assigned() and time.monotonic() < deadline:
                source.next_batch()
            assert source.assigned(), f"attempt {attempt}: no partitions after 30 s"
            held = source.consumer.assignment()
            assert held == set(range(PARTITIONS))
        finally:
            source.close()
        joins = [r.getMessage() for r in caplog.records if r.getMessage().startswith("assigned")]
        assert joins, "the rebalance listener never ran"
        assert joins[0].startswith(f"assigned partitions {list(range(PARTITIONS))} of {topic}"), (
            f"attempt {attempt}: the first join did not assign every partition: {joins}"
        )


def test_a_learner_short_of_partitions_rejoins_until_it_holds_them_all(
    kafka: KafkaSettings, topic_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    """Another member takes half the partitions (what a lost join looks like from the
    learner's side: fewer held than the topic has); after ``rejoin_after_s`` the learner
    rejoins, and once the other member is gone it holds every partition again, having
    taken every example exactly once across the rejoins."""
    from kafka import KafkaConsumer, KafkaProducer

    topic = topic_name("examples")
    ensure_topics(kafka, [topic], partitions=PARTITIONS)
    examples = synthetic_examples(num_users=8, events_per_user=30, num_items=40, seed=3)
    producer = KafkaProducer(**kafka.kafka_python(), acks="all")
    for example in examples:
        producer.send(topic, key=example.user_id.encode(), value=example.to_json())
    producer.flush()
    producer.close()
    taken: list[str] = []
    group = f"short-{uuid.uuid4().hex[:8]}"
    config = SourceConfig(topic=topic, group=group, rejoin_after_s=2.0)
    source = KafkaExampleSource(make_consumer(kafka, config), config)
    other = KafkaConsumer(topic, **kafka.kafka_python(), group_id=group, enable_auto_commit=False)
    stop = threading.Event()

    def keep_polling() -> None:  # a member that stops polling is dropped from the group
        while not stop.is_set():
            other.poll(timeout_ms=100)

    poller = threading.Thread(target=keep_polling)
    poller.start()
    caplog.set_level(logging.WARNING, logger="learner.kafka_source")
    try:
        deadline = time.monotonic() + 60
        while source.rejoins == 0 and time.monotonic() < deadline:
            taken += [e.event_id for e in source.next_batch().examples]
        assert source.rejoins >= 1, "the learner never rejoined while it held a share"
        assert any("rejoining group" in r.getMessage() for r in caplog.records)
        stop.set()
        poller.join()
        other.close()  # a dynamic member leaves the group at once
        deadline = time.monotonic() + 60
        held: set[int] = set()
        while held != set(range(PARTITIONS)) and time.monotonic() < deadline:
            taken += [e.event_id for e in source.next_batch().examples]
            held = source.consumer.assignment()
        assert held == set(range(PARTITIONS))
        while len(taken) < len(examples) and time.monotonic() < deadline:
            taken += [e.event_id for e in source.next_batch().examples]
        assert sorted(taken) == sorted(e.event_id for e in examples)  # none lost, none twice
    finally:
        stop.set()
        poller.join()
        other.close()  # a second close does nothing
        source.close()


def test_partitions_added_to_the_topic_are_read_within_the_metadata_age(
    kafka: KafkaSettings, topic_name: Callable[[str], str]
) -> None:
    """The topic grows from 2 to 4 partitions while the learner reads it: within about
    ``metadata_max_age_ms`` the learner holds all four and takes the examples written
    to the new ones, every example exactly once (kafka-python's own default age is 5
    minutes, so added partitions went unread that long)."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewPartitions

    topic = topic_name("examples")
    ensure_topics(kafka, [topic], partitions=2)
    examples = synthetic_examples(num_users=8, events_per_user=20, num_items=40, seed=5)
    half = len(examples) // 2
    producer = KafkaProducer(**kafka.kafka_python(), acks="all")
    for n, example in enumerate(examples[:half]):
        producer.send(topic, value=example.to_json(), partition=n % 2)
    producer.flush()
    config = SourceConfig(
        topic=topic, group=f"grow-{uuid.uuid4().hex[:8]}", metadata_max_age_ms=1000,
        rejoin_after_s=3.0,  # kafka-python can lose the join an addition triggers
    )  # fmt: skip
    source = KafkaExampleSource(make_consumer(kafka, config), config)
    admin = KafkaAdminClient(**kafka.kafka_python())
    taken: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while len(taken) < half and time.monotonic() < deadline:
            taken += [e.event_id for e in source.next_batch().examples]
        assert len(taken) == half
        admin.create_partitions({topic: NewPartitions(total_count=4)})
        producer.close()
        producer = KafkaProducer(**kafka.kafka_python(), acks="all", metadata_max_age_ms=200)
        while len(producer.partitions_for(topic)) < 4 and time.monotonic() < deadline + 30:
            time.sleep(0.2)
        for n, example in enumerate(examples[half:]):
            producer.send(topic, value=example.to_json(), partition=2 + n % 2)
        producer.flush()
        deadline = time.monotonic() + 45
        while len(taken) < len(examples) and time.monotonic() < deadline:
            taken += [e.event_id for e in source.next_batch().examples]
        assert source.consumer.assignment() == {0, 1, 2, 3}
        assert sorted(taken) == sorted(e.event_id for e in examples)  # none lost, none twice
    finally:
        producer.close()
        admin.close()
        source.close()
