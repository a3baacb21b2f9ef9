"""Records as any producer may write them reach the worker: Kafka's four codecs, odd
record envelopes and header keys that are not UTF-8, on the real broker.

Producers choose their batches' compression (``compression.type``), and the broker keeps
it as written (the topic's default is ``producer``). aiokafka can decode only gzip unless
``cramjam`` is installed; without it a batch in lz4, snappy or zstd raised
``UnsupportedCodecError`` in the fetch, before the worker saw a record, so one producer
configured with lz4 stopped every worker of the group. A header key that is not UTF-8
raised ``UnicodeDecodeError`` in the same place (``streams.tolerant_records``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import ProcessGroup
from recoil.core.records import TrainingExample
from recoil.core.topics import topic_bytes
from streams.dlq import DeadLetter
from streams.harness import Record, create_topics, metric, read_topic, scrape, start_worker
from tests.support.header_keys import NOT_UTF8, RawHeaderKey
from tests.support.streams import fast_worker_config, metrics_url, watched_event, worker_topics

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 30


def produce_compressed(
    kafka: KafkaSettings, topic: str, codec: str, records: list[tuple[bytes, bytes]]
) -> None:
    """Produce ``records`` through librdkafka with ``codec``, lingering so they batch."""
    from confluent_kafka import Producer

    producer = Producer({**kafka.librdkafka(), "compression.type": codec, "linger.ms": 50,
                         "enable.idempotence": True})  # fmt: skip
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0, f"{codec}: records left unsent"


def output_ids(kafka: KafkaSettings, topic: str, until: Callable[[set[str]], bool]) -> set[str]:
    """The event ids of the examples in ``topic``, once ``until`` holds for them."""

    def ids(records: list[Record]) -> set[str]:
        return {TrainingExample.from_json(r.value).event_id for r in records}

    return ids(read_topic(kafka, topic, lambda records: until(ids(records)), 120))


def test_every_codec_a_producer_may_choose_reaches_the_worker(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = fast_worker_config(**worker_topics(topic_name), data_dir=tmp_path / "data")
    create_topics(kafka, config)
    expected: list[str] = []
    for n, codec in enumerate(CODECS):
        users = [f"u{n}-{i % 3}" for i in range(PER_CODEC)]
        ids = [f"{codec}-{i}" for i in range(PER_CODEC)]
        produce_compressed(kafka, config.input_topic, codec, [
            (user.encode(), watched_event(i, user=user, event_id=eid))
            for i, (user, eid) in enumerate(zip(users, ids, strict=True))
        ])  # fmt: skip
        expected += ids
    with ProcessGroup(tmp_path / "logs") as group:
        worker = start_worker(group, "worker", kafka, config)

        got = output_ids(kafka, config.output_topic, lambda ids: len(ids) >= len(expected))
        samples = scrape(metrics_url(config))
        group.check()  # the first worker process, still running
        log = worker.log_file.read_text()

    assert got == set(expected)
    assert metric(samples, "recoil_stream_worker_restarts_total") == 0.0
    assert "UnsupportedCodecError" not in log


def test_record_envelopes_a_client_may_write_stop_nothing(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    """Beyond the value: tombstones, missing and empty keys, header values of every kind and
    the oldest timestamps a broker takes. Good events between them all come out."""
    from confluent_kafka import Producer

    config = fast_worker_config(**worker_topics(topic_name), data_dir=tmp_path / "data")
    create_topics(kafka, config)
    producer = Producer({**kafka.librdkafka(), "enable.idempotence": True})
    user = b"envelope"
    odd: list[dict[str, object]] = [  # each follows a good event of the same user
        {"key": user, "value": None},  # a tombstone
        {"key": None, "value": watched_event(3, user="envelope", event_id="nokey")},
        {"key": b"", "value": b""},
        {"key": user, "value": None, "headers": [("h", None), ("", b"")]},
        {"key": user, "value": b"{}", "timestamp": 1},
        {"key": user, "value": watched_event(11, user="envelope", event_id="ts0"), "timestamp": 0},
        {"key": user, "value": b"x", "headers": [("bin", bytes(range(256)))] * 50},
    ]
    good_ids = []
    for n, fields in enumerate(odd):
        good_ids.append(f"e{n}")
        good = watched_event(n * 2, user="envelope", event_id=f"e{n}")
        producer.produce(config.input_topic, key=user, value=good)
        producer.produce(config.input_topic, **fields)  # type: ignore[arg-type]
    assert producer.flush(30) == 0
    with ProcessGroup(tmp_path / "logs") as group:
        start_worker(group, "worker", kafka, config)

        got = output_ids(kafka, config.output_topic, lambda ids: set(good_ids) <= ids)
        letters = read_topic(kafka, config.dlq_topic, lambda rs: len(rs) >= 5, 60)
        samples = scrape(metrics_url(config))
        group.check()
    codes = sorted(DeadLetter.from_record(r.key, r.value, r.headers).code for r in letters)
    # the event under the null key (on a partition of librdkafka's choosing) is
    # dead-lettered; the one stamped 1970 is an event like any other
    assert got == {*good_ids, "ts0"}
    assert codes == ["invalid_json"] * 4 + ["missing_field", "wrong_key"]
    assert metric(samples, "recoil_stream_worker_restarts_total") == 0.0


def test_the_worker_writes_compressed_batches_the_learner_reads(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    """``--producer-compression zstd``: the examples topic takes a fraction of the bytes
    of its examples, and the learner's source reads every one."""
    from learner.kafka_source import KafkaExampleSource, SourceConfig, make_consumer

    config = fast_worker_config(
        **worker_topics(topic_name), data_dir=tmp_path / "data", producer_compression="zstd"
    )
    create_topics(kafka, config)
    users = [f"z{u}" for u in range(3)]
    produce_compressed(kafka, config.input_topic, "none", [
        (user.encode(), watched_event(n, user=user, event_id=f"{user}-{n}"))
        for n in range(200) for user in users
    ])  # fmt: skip
    source_config = SourceConfig(topic=config.output_topic, group=topic_name("learner"))
    taken: list[TrainingExample] = []
    with ProcessGroup(tmp_path / "logs") as group:
        start_worker(group, "worker", kafka, config)
        source = KafkaExampleSource(make_consumer(kafka, source_config), source_config)
        try:
            deadline = time.monotonic() + 120
            while len(taken) < 600 and time.monotonic() < deadline:
                taken += source.next_batch().examples
        finally:
            source.close()
        group.check()

    expected = {f"{user}-{n}" for n in range(200) for user in users}
    assert sorted(e.event_id for e in taken) == sorted(expected)  # each once
    example_bytes = sum(len(e.to_json()) for e in taken)
    stored = topic_bytes(kafka, config.output_topic)
    assert 0 < stored < example_bytes / 3, (stored, example_bytes)


def test_header_keys_that_are_not_utf8_stop_nothing(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    """Events whose header key is not UTF-8, in batches with good ones (plain and zstd):
    each becomes an example like any event, an invalid value among them a dead letter."""
    from kafka import KafkaProducer

    config = fast_worker_config(**worker_topics(topic_name), data_dir=tmp_path / "data")
    create_topics(kafka, config)
    ids = []
    for compression in (None, "zstd"):
        producer = KafkaProducer(**kafka.kafka_python(), acks="all", linger_ms=100,
                                 compression_type=compression)  # fmt: skip
        for n in range(12):
            user = f"h-{compression}-{n % 2}"
            eid = f"{user}-{n}"
            key = RawHeaderKey(NOT_UTF8 + b"trace") if n % 3 == 0 else "trace"
            producer.send(config.input_topic, key=user.encode(), headers=[(key, b"x")],
                          value=watched_event(n, user=user, event_id=eid))  # fmt: skip
            ids.append(eid)
        producer.send(config.input_topic, key=b"h-bad", value=b"{not json",
                      headers=[(RawHeaderKey(NOT_UTF8), b"")])  # fmt: skip
        producer.flush()
        producer.close()
    with ProcessGroup(tmp_path / "logs") as group:
        worker = start_worker(group, "worker", kafka, config)
        got = output_ids(kafka, config.output_topic, lambda found: set(ids) <= found)
        letters = read_topic(kafka, config.dlq_topic, lambda rs: len(rs) >= 2, 60)
        samples = scrape(metrics_url(config))
        group.check()  # the first worker process, still running
        log = worker.log_file.read_text()

    assert got == set(ids)
    codes = [DeadLetter.from_record(r.key, r.value, r.headers).code for r in letters]
    assert codes == ["invalid_json", "invalid_json"]
    assert metric(samples, "recoil_stream_worker_restarts_total") == 0.0
    # each producer's bad keys sit in batches of their own partitions: two at least
    assert (metric(samples, "recoil_stream_reread_batches_total") or 0) >= 2
    assert "header key that is not UTF-8" in log
