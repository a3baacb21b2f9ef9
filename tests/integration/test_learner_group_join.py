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
import time
import uuid
from collections.abc import Callable

import pytest

from learner.kafka_source import KafkaExampleSource, SourceConfig, make_consumer
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
            held = {tp.partition for tp in source.consumer.assignment()}
            assert held == set(range(PARTITIONS))
        finally:
            source.close()
        joins = [r.getMessage() for r in caplog.records if r.getMessage().startswith("assigned")]
        assert joins, "the rebalance listener never ran"
        assert joins[0].startswith(f"assigned partitions {list(range(PARTITIONS))} of {topic}"), (
            f"attempt {attempt}: the first join did not assign every partition: {joins}"
        )
