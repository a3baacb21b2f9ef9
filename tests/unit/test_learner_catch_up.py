"""A backlog trains in larger steps; without one, batches stay at ``batch_size``.

A backlog is what is fetched or, by the partitions' highwater marks, still on the
broker: a real fetch brings a few hundred examples per partition, so counting the
fetched records alone left an 80k backlog training mostly in small steps.
"""

from __future__ import annotations

from bench.learner_profile import MemoryConsumer, WorkerRecord
from learner.kafka_source import KafkaExampleSource, RawBatch, SourceConfig
from tests.unit.test_learner_example_decoder import _examples


def _source(
    catch_up: int, count: int, consumer_type: type[MemoryConsumer] = MemoryConsumer,
    batch_timeout_s: float = 0.01,
) -> tuple[KafkaExampleSource, MemoryConsumer]:  # fmt: skip
    values = [WorkerRecord(e.user_id, e.to_json(), []) for e in _examples(3, 400)][:count]
    config = SourceConfig(
        topic="examples", batch_size=64, catch_up_batch_size=catch_up, max_poll_records=300,
        batch_timeout_s=batch_timeout_s, idle_tick_s=0.01, poll_timeout_ms=1,
    )  # fmt: skip
    consumer = consumer_type("examples", values, partitions=1)
    # Time passes only while the consumer waits for records: a loaded machine's pauses
    # between two polls must not end a batch early.
    clock = lambda: sum(seconds for _, seconds in consumer.sleeps)  # noqa: E731
    return KafkaExampleSource(consumer, config, clock=clock), consumer


def _sizes(catch_up: int, count: int) -> list[int]:
    source, _ = _source(catch_up, count)
    sizes, taken = [], 0
    while taken < count:
        batch = source.next_batch()
        sizes.append(len(batch.examples))
        taken += len(batch.examples)
    return sizes


def test_a_backlog_on_the_broker_is_trained_in_catch_up_steps() -> None:
    # nothing fetched yet, no highwater known: 64. Then the highwater says 436 wait:
    # 200, from the 236 fetched; 236 wait, only 36 fetched: still a step of 200 (the
    # next poll brings the rest); 36 wait: back to 64, and the last 36 after the timeout
    assert _sizes(catch_up=200, count=500) == [64, 200, 200, 36]


def test_without_a_backlog_batches_stay_at_batch_size() -> None:
    sizes = _sizes(catch_up=1024, count=500)
    assert max(sizes) == 64 and sum(sizes) == 500


class _OpenTransaction(MemoryConsumer):
    """1,000 records past the readable ones count in the highwater mark, as an open
    transaction's do under read_committed."""

    def highwater(self, partition: int) -> int | None:
        high = super().highwater(partition)
        return None if high is None else high + 1000


def test_a_catch_up_step_does_not_wait_for_records_it_cannot_read() -> None:
    source, consumer = _source(1024, 500, _OpenTransaction, batch_timeout_s=30.0)
    first = source.next_batch()
    assert len(first.examples) == 64  # no highwater before the first fetch
    second: RawBatch = source.next_batch()
    # a step of 1024 was due; the 436 readable ones train after the first empty poll,
    # not after 30 s of polls for records that are not there
    assert len(second.examples) == 436
    assert len(consumer.sleeps) == 1
