"""The embedded broker is a real Kafka: partitions, consumer groups, commits, resume."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from recoil.core.events import InteractionEvent, parse_event
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.topics import ensure_topics

pytestmark = pytest.mark.integration

N_EVENTS = 10_000
PARTITIONS = 4


def _event(i: int) -> InteractionEvent:
    return InteractionEvent(
        event_id=f"e{i}",
        user_id=f"u{i % 97}",
        item_id=f"i{i % 1009}",
        creator_id=f"c{i % 101}",
        timestamp=1_700_000_000.0 + i,
        surface="home",
        dwell_seconds=float(i % 30),
        item_duration_seconds=30.0,
        liked=i % 7 == 0,
        disliked=i % 53 == 0,
        dismissed=False,
    )


def _consumer(kafka: KafkaSettings, topic: str, group: str) -> KafkaConsumer:
    consumer = KafkaConsumer(
        **kafka.kafka_python(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    consumer.subscribe([topic])
    return consumer


def test_produce_consume_commit_restart_resumes_exactly(
    kafka: KafkaSettings, topic_name: Callable[[str], str]
) -> None:
    topic = topic_name("interactions")
    assert ensure_topics(kafka, [topic], partitions=PARTITIONS) == [topic]
    assert ensure_topics(kafka, [topic], partitions=PARTITIONS) == []  # idempotent

    producer = KafkaProducer(**kafka.kafka_python(), acks="all", linger_ms=5)
    for i in range(N_EVENTS):
        event = _event(i)
        producer.send(topic, key=event.user_id.encode(), value=event.to_json())
    producer.flush()
    producer.close()

    seen: list[str] = []
    partitions_by_user: dict[str, set[int]] = {}

    def process(batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        for tp, records in batch.items():
            for record in records:
                parsed = parse_event(record.value)
                assert isinstance(parsed, InteractionEvent), parsed
                seen.append(parsed.event_id)
                partitions_by_user.setdefault(parsed.user_id, set()).add(tp.partition)

    # First consumer: process roughly half, commit exactly what was processed, leave.
    first = _consumer(kafka, topic, "resume-test")
    while len(seen) < N_EVENTS // 2:
        process(first.poll(timeout_ms=2000))
    first.commit()
    committed_after_first = len(seen)
    first.close()
    assert N_EVENTS // 2 <= committed_after_first < N_EVENTS

    # Second consumer in the same group resumes from the committed offsets.
    second = _consumer(kafka, topic, "resume-test")
    while len(seen) < N_EVENTS:
        batch = second.poll(timeout_ms=5000)
        assert batch, f"stalled after {len(seen)} records"
        process(batch)
    second.commit()
    # Nothing more arrives: the group's position is the end of every partition.
    assert second.poll(timeout_ms=1000) == {}
    ends = second.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    for tp, end in ends.items():
        assert second.committed(tp) == end
    second.close()

    assert len(seen) == N_EVENTS, "records were repeated"
    assert set(seen) == {f"e{i}" for i in range(N_EVENTS)}, "records were lost"
    # Keyed by user id: each user's events live on exactly one partition, all partitions used.
    assert all(len(parts) == 1 for parts in partitions_by_user.values())
    assert {p for parts in partitions_by_user.values() for p in parts} == set(range(PARTITIONS))


def test_topic_has_requested_partitions(
    kafka: KafkaSettings, topic_name: Callable[[str], str]
) -> None:
    topic = topic_name("training-examples")
    ensure_topics(kafka, [topic], partitions=3)
    consumer = KafkaConsumer(**kafka.kafka_python())
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2}
    finally:
        consumer.close()
    assert json.loads(_event(1).to_json())["event_id"] == "e1"
