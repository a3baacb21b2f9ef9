"""A backlog already fetched trains in larger steps; without one, batches stay at
``batch_size``."""

from __future__ import annotations

from bench.learner_profile import MemoryConsumer
from learner.kafka_source import KafkaExampleSource, SourceConfig
from tests.unit.test_learner_example_decoder import _examples


def _sizes(catch_up: int, count: int) -> list[int]:
    values = [(e.user_id, e.to_json()) for e in _examples(users=3, per_user=400)][:count]
    config = SourceConfig(
        topic="examples", batch_size=64, catch_up_batch_size=catch_up, max_poll_records=300,
        batch_timeout_s=0.01, idle_tick_s=0.01, poll_timeout_ms=1,
    )  # fmt: skip
    source = KafkaExampleSource(MemoryConsumer("examples", values, partitions=1), config)
    sizes, taken = [], 0
    while taken < count:
        batch = source.next_batch()
        sizes.append(len(batch.examples))
        taken += len(batch.examples)
    return sizes


def test_a_fetched_backlog_is_trained_in_catch_up_steps() -> None:
    # poll 300: 64 taken, 236 left >= 200: a step of 200; 36 left + 28 of the next poll
    # (the last 200 records), 172 left < 200: back to 64
    assert _sizes(catch_up=200, count=500)[:4] == [64, 200, 64, 64]


def test_without_a_backlog_batches_stay_at_batch_size() -> None:
    sizes = _sizes(catch_up=1024, count=500)
    assert max(sizes) == 64 and sum(sizes) == 500
