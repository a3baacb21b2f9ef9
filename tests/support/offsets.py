"""A consumer group's committed offsets beside the topic's end offsets, for the learner's
exactly-once checks (nothing lost: committed == end; nothing past: the same)."""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition

from recoil.core.kafka_settings import KafkaSettings


def end_and_committed(
    kafka: KafkaSettings, topic: str, group: str, partitions: int
) -> tuple[dict[int, int], dict[int, int | None]]:
    """(end offset, committed offset of ``group``) per partition of ``topic``."""
    consumer = KafkaConsumer(**kafka.kafka_python(), group_id=group)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
        return ends, {tp.partition: consumer.committed(tp) for tp in tps}
    finally:
        consumer.close()
