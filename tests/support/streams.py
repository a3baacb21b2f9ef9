"""What the stream-worker kill and rebalance tests share: a worker config that reacts
fast, the pure rule's expected output, paced input and the settled output."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from recoil.broker.embedded import free_port
from recoil.core.events import InteractionEvent
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.labels import LabelConfig
from streams.config import StreamsConfig
from streams.harness import Record, metric, produce, scrape, wait_until
from streams.state import UserState, replay_in_arrival_order

LABELS = LabelConfig(history_length=10)


def fast_worker_config(**fields: Any) -> StreamsConfig:
    """A worker of 4 partitions on free ports that commits, rebalances and batches quickly;
    ``fields`` name its app, topics and data directory."""
    return StreamsConfig(
        labels=LABELS, partitions=4, web_port=free_port(), metrics_port=free_port(),
        commit_interval=0.5, session_timeout=6.0, batch_size=100, **fields,
    )  # fmt: skip


def metrics_url(config: StreamsConfig) -> str:
    return f"http://127.0.0.1:{config.metrics_port}/metrics"


def expected_output(
    events: Sequence[InteractionEvent],
) -> tuple[list[bytes], dict[str, UserState]]:
    """The pure rule's examples for ``events`` (sorted JSON) and its final user states."""
    examples, states = replay_in_arrival_order(events, LABELS, dedupe_window=100)
    return sorted(x.to_json() for x in examples), states


def paced_producer(
    kafka: KafkaSettings, topic: str, events: Sequence[InteractionEvent], chunk: int, pause: float
) -> threading.Thread:
    """Produce ``events`` in order, ``chunk`` at a time, in a background thread."""

    def run() -> None:
        for start in range(0, len(events), chunk):
            produce(kafka, topic, [(e.user_id.encode(), e.to_json())
                                   for e in events[start : start + chunk]])  # fmt: skip
            time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    """Per partition, the offset after the last committed record (read_committed: the LSO)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **kafka.kafka_python(), group_id=None, isolation_level="read_committed"
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        return {tp.partition: int(o) for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def committed_offsets(kafka: KafkaSettings, group: str, topic: str) -> dict[int, int | None]:
    """The consumer group's committed offsets on ``topic`` (None: nothing committed yet)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.kafka_python(), group_id=group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        return {p: consumer.committed(TopicPartition(topic, p)) for p in sorted(partitions)}
    finally:
        consumer.close()


def read_to_end(kafka: KafkaSettings, topic: str, timeout: float = 60.0) -> list[Record]:
    """Every committed record of ``topic``: read until each partition's position reaches
    the end offset taken at the start; raise on timeout."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **kafka.kafka_python(), group_id=None, enable_auto_commit=False,
        isolation_level="read_committed",
    )  # fmt: skip
    records: list[Record] = []
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            raise AssertionError(f"topic {topic} does not exist")
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(records)} records of {topic} in {timeout}s, "
                                   f"short of the end offsets {ends}")  # fmt: skip
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(
                    Record(r.topic, r.partition, r.offset, r.key, r.value,
                           tuple((k, bytes(v)) for k, v in (r.headers or ())))
                    for r in batch
                )  # fmt: skip
    finally:
        consumer.close()
    return records


def settled_output(
    kafka: KafkaSettings, config: StreamsConfig, timeout: float = 180.0
) -> list[bytes]:
    """The output topic's committed values once the worker group has committed its whole
    input: every event's examples are then committed too (same transaction under
    exactly-once, sent before the commit under at-least-once), so nothing more can come."""

    def input_committed() -> bool:
        ends = end_offsets(kafka, config.input_topic)
        committed = committed_offsets(kafka, config.app_id, config.input_topic)
        return {p: o or 0 for p, o in committed.items()} == ends  # None: an empty partition

    wait_until(input_committed, timeout, f"group {config.app_id} to commit all its input")
    return sorted(r.value for r in read_to_end(kafka, config.output_topic))


def scrape_outcomes(url: str) -> dict[str, float]:
    """Events the worker scraped at ``url`` has finished, by outcome (``streams.state``)."""
    samples = scrape(url)
    return {
        o: metric(samples, "recoil_stream_events_total", outcome=o) or 0.0
        for o in ("positive", "dislike", "skip", "none", "invalid", "duplicate", "out_of_order")
    }


def processed(url: str) -> float:
    """Events the worker scraped at ``url`` has finished, whatever their outcome."""
    return sum(scrape_outcomes(url).values())
