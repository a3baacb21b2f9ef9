"""What the stream-worker tests share: their topic names, a worker config that reacts
fast, the pure rule's expected output, paced input, a kill and restart, and the settled
output."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

from recoil.broker.embedded import free_port
from recoil.core.events import InteractionEvent, parse_event
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.labels import LabelConfig
from recoil.core.processes import Child, ProcessGroup
from streams.config import StreamsConfig
from streams.harness import Record, metric, produce, scrape, start_worker, wait_until
from streams.state import UserState, replay_in_arrival_order

LABELS = LabelConfig(history_length=10)
USER = b"dora"  # the key of watched_event's default user


def watched_event(n: int, user: str = "dora", event_id: str | None = None) -> bytes:
    """A valid event (JSON) of ``user`` at time ``n``: item ``i<n>`` watched 29 s of its
    30 s, a positive; its id is ``event_id``, by default ``g<n>``."""
    return InteractionEvent(
        event_id=f"g{n}" if event_id is None else event_id, user_id=user, item_id=f"i{n}",
        creator_id="c", cluster_id=None, timestamp=1_700_000_000.0 + n, surface="home",
        dwell_seconds=29.0, item_duration_seconds=30.0, liked=False, disliked=False,
        dismissed=False,
    ).to_json()  # fmt: skip


class WorkerTopics(TypedDict):
    app_id: str
    input_topic: str
    output_topic: str
    dlq_topic: str


def worker_topics(topic_name: Callable[[str], str], app: str = "app") -> WorkerTopics:
    """The app id and topics of worker group ``app``, unique to the test (``topic_name`` is
    its fixture): the groups of one test read one input topic, each writes its own output
    and dead letters."""
    return WorkerTopics(
        app_id=topic_name(app), input_topic=topic_name("in"),
        output_topic=topic_name(f"out-{app}"), dlq_topic=topic_name(f"dlq-{app}"),
    )  # fmt: skip


def fast_worker_config(**fields: Any) -> StreamsConfig:
    """A worker of 4 partitions on free ports that commits, rebalances and batches quickly;
    ``fields`` name its app, topics and data directory, and may override any of these."""
    fast: dict[str, Any] = {
        "labels": LABELS, "partitions": 4, "web_port": free_port(), "metrics_port": free_port(),
        "commit_interval": 0.5, "session_timeout": 6.0, "batch_size": 100,
    }  # fmt: skip
    return StreamsConfig(**{**fast, **fields})


def small_at_least_once_config(topic_name: Callable[[str], str], data_dir: Path) -> StreamsConfig:
    """At-least-once with the in-memory store on 2 partitions, committing every 0.3 s: the
    dead-letter tests' worker (the round-trip test covers exactly-once with RocksDB)."""
    return StreamsConfig(
        **worker_topics(topic_name), data_dir=data_dir, store="memory",
        processing_guarantee="at_least_once", partitions=2, web_port=free_port(),
        metrics_port=free_port(), commit_interval=0.3, session_timeout=6.0,
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
    kafka: KafkaSettings,
    topic: str,
    events: Sequence[InteractionEvent],
    chunk: int,
    pause: float,
    gate: tuple[int, threading.Event] | None = None,
) -> threading.Thread:
    """Produce ``events`` in order, ``chunk`` at a time, in a background thread; with a
    ``gate`` (index, event), the events from that index on wait until the event is set
    (at most 300 s), so a test can act while the stream is known to be unfinished."""

    def run() -> None:
        for start in range(0, len(events), chunk):
            if gate is not None and start >= gate[0]:
                gate[1].wait(300)
            produce(kafka, topic, [(e.user_id.encode(), e.to_json())
                                   for e in events[start : start + chunk]])  # fmt: skip
            time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def feed_until_processed(
    kafka: KafkaSettings,
    config: StreamsConfig,
    events: Sequence[InteractionEvent],
    chunk: int,
    pause: float,
    count: int,
    children: Sequence[Child],
    timeout: float = 120.0,
    gate: tuple[int, threading.Event] | None = None,
) -> threading.Thread:
    """Start feeding ``events`` to the input of ``config`` (``paced_producer``, ``gate``
    included) and return its thread once the worker of ``config`` has processed ``count``
    events; past ``timeout`` seconds fail with the ``children``'s logs."""
    producer = paced_producer(kafka, config.input_topic, events, chunk, pause, gate)
    url = metrics_url(config)
    wait_until(lambda: processed(url) >= count, timeout, f"{count} events through {url}",
               children)  # fmt: skip
    return producer


def kill_and_restart(
    group: ProcessGroup, victim: Child, kafka: KafkaSettings, config: StreamsConfig
) -> Child:
    """SIGKILL ``victim`` (checked to have died of it) and start the worker again under
    its name; the dead child leaves ``group``, so ``group.check()`` does not count it."""
    group.stop(victim, sig=signal.SIGKILL)
    assert victim.process.returncode == -signal.SIGKILL
    group.children.remove(victim)
    return start_worker(group, victim.name, kafka, config)


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


def stored_events(kafka: KafkaSettings, topic: str) -> list[InteractionEvent]:
    """The events of ``topic`` as the broker stores them: partition by partition, in
    offset order -- each user's order, which is all the pure rule depends on."""
    records = sorted(read_to_end(kafka, topic), key=lambda r: (r.partition, r.offset))
    events = [parse_event(r.value) for r in records]
    return [e for e in events if isinstance(e, InteractionEvent)]


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
