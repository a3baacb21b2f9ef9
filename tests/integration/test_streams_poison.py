"""No single record stops the worker: poison pills up to the broker's limit, and a record
whose dead letter the broker refuses, on the real broker through ``recoil worker``.

A poison pill used to be dead-lettered with its original bytes: over the producer's
limit, the send failed, the worker exited and restarted and read it again, forever.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import Child, ProcessGroup
from recoil.core.records import TrainingExample
from streams.config import Guarantee, StreamsConfig
from streams.dlq import MAX_DEAD_LETTER_BYTES, MAX_VALUE_BYTES, DeadLetter
from streams.harness import (
    Record,
    create_topics,
    metric,
    produce,
    read_topic,
    scrape,
    start_worker,
    wait_until,
)
from streams.supervisor import worker_command
from tests.support.streams import USER, fast_worker_config, metrics_url, worker_topics
from tests.support.streams import watched_event as good

pytestmark = pytest.mark.integration

RESTARTED = "restarting"  # the supervisor's log line after a worker exit
PRINTED = re.compile(r"^metrics: http://127\.0\.0\.1:(\d+)/metrics$", re.MULTILINE)


def pill(size: int) -> bytes:
    """A valid event plus a ``note`` field of up to 200,000 strings: exactly ``size`` bytes."""
    obj = json.loads(good(0))
    obj["note"] = []
    empty = json.dumps(obj, separators=(",", ":")).encode()  # ...,"note":[]}
    count = min(200_000, (size - len(empty) - 2) // 4)
    items = b'"x",' * count
    pad = size - len(empty) - len(items) - 2
    value = empty[:-2] + items + b'"' + b"y" * pad + b'"]}'
    assert len(value) == size
    return value


def broker_limit(kafka: KafkaSettings) -> int:
    """The broker's ``message.max.bytes``: the largest record batch it accepts."""
    admin = KafkaAdminClient(**kafka.kafka_python())
    try:
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, "1", {"message.max.bytes": None})],
            config_filter="all",
        )
    finally:
        admin.close()
    return int(_find(found, "message.max.bytes"))


def _find(tree: Any, name: str) -> Any:
    """The value of config ``name`` anywhere in a describe_configs answer."""
    if isinstance(tree, dict):
        if name in tree:
            entry = tree[name]
            return entry["value"] if isinstance(entry, dict) else entry
        children = list(tree.values())
    elif isinstance(tree, list | tuple):
        children = list(tree)
    else:
        children = []
    for child in children:
        found = _find(child, name)
        if found is not None:
            return found
    return None


def largest_value(limit: int, key: bytes) -> int:
    """The largest value of a single-record, uncompressed batch of at most ``limit`` bytes:
    a batch header of 61 bytes, then the record's varint length, attributes, timestamp
    and offset deltas, key length, key, value length, value and header count."""

    def batch(value: int) -> int:
        record = 3 + _varint(len(key)) + len(key) + _varint(value) + value + 1
        return 61 + _varint(record) + record

    value = limit
    while batch(value) > limit:
        value -= 1
    return value


def _varint(n: int) -> int:
    """Bytes of Kafka's zigzag varint of ``n``."""
    zigzag, length = n << 1, 1
    while zigzag >= 0x80:
        zigzag >>= 7
        length += 1
    return length


def produce_one(kafka: KafkaSettings, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
    """Produce one record in a batch of its own (the broker's limit is per batch)."""
    producer = KafkaProducer(**kafka.kafka_python(), acks="all", max_request_size=4_000_000,
                             linger_ms=0, retries=0)  # fmt: skip
    try:
        meta = producer.send(topic, key=key, value=value).get(timeout=30)
        return meta.partition, meta.offset
    finally:
        producer.close()


def create_topics_with_a_small_dlq(
    kafka: KafkaSettings, config: StreamsConfig, max_record_bytes: int
) -> None:
    """The worker's topics, its DLQ topic first: one partition that refuses records of more
    than ``max_record_bytes`` (``max.message.bytes``)."""
    admin = KafkaAdminClient(**kafka.kafka_python())
    try:
        admin.create_topics({config.dlq_topic: {
            "num_partitions": 1, "replication_factor": 1,
            "configs": {"max.message.bytes": str(max_record_bytes)},
        }}, wait_for_metadata=True)  # fmt: skip
    finally:
        admin.close()
    create_topics(kafka, config)


def restarts(url: str) -> tuple[float | None, float | None]:
    samples = scrape(url)
    return (
        metric(samples, "recoil_stream_worker_restarts_total"),
        metric(samples, "recoil_stream_same_offset_restarts_total"),
    )


def examples(kafka: KafkaSettings, config: StreamsConfig, count: int) -> list[str]:
    """The event ids of the output's examples, once ``count`` distinct ones are there."""

    def ids(records: list[Record]) -> list[str]:
        return sorted(TrainingExample.from_json(r.value).event_id for r in records)

    return ids(read_topic(kafka, config.output_topic, lambda rs: len(set(ids(rs))) >= count,
                          120))  # fmt: skip


def test_records_up_to_the_broker_limit_are_dead_lettered_without_a_restart(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = fast_worker_config(**worker_topics(topic_name), data_dir=tmp_path / "data")
    limit = broker_limit(kafka)
    largest = largest_value(limit, USER)
    assert limit >= 1_000_000 + 100  # the broker's default, 1 MiB + 12: a 1 MB pill fits
    pills = [pill(900_000), pill(1_000_000), pill(largest)]
    create_topics(kafka, config)
    with pytest.raises(KafkaError):  # one byte more: the broker refuses it
        produce_one(kafka, config.input_topic, USER, pill(largest + 1))
    with ProcessGroup(tmp_path / "logs") as group:
        worker = start_worker(group, "worker", kafka, config)
        placed: list[tuple[int, int]] = []
        for n, value in enumerate(pills, start=1):  # good 1, pill, good 2, pill, ... good 4
            produce(kafka, config.input_topic, [(USER, good(n))])
            placed.append(produce_one(kafka, config.input_topic, USER, value))
        produce(kafka, config.input_topic, [(USER, good(len(pills) + 1))])
        letters = read_topic(kafka, config.dlq_topic, lambda rs: len(rs) >= len(pills), 120)
        got = examples(kafka, config, len(pills) + 1)
        url = metrics_url(config)
        wait_until(lambda: metric(scrape(url), "recoil_stream_dlq_events_total") == len(pills),
                   30, "DLQ counter", [worker])  # fmt: skip
        assert restarts(url) == (0.0, 0.0)
        group.check()  # still the first worker process
        log = worker.log_file.read_text()

    assert got == [f"g{n}" for n in range(1, len(pills) + 2)]
    assert len(letters) == len(pills)
    for record, value, (partition, offset) in zip(letters, pills, placed, strict=True):
        letter = DeadLetter.from_record(record.key, record.value, record.headers)
        assert (letter.code, letter.key, letter.truncated) == ("oversized", USER, True)
        assert letter.value == value[:MAX_VALUE_BYTES] and letter.is_original(value)
        assert (letter.source_partition, letter.source_offset) == (partition, offset)
        assert len(record.value) + sum(len(k) + len(v) for k, v in record.headers) < (
            MAX_DEAD_LETTER_BYTES
        )
    assert RESTARTED not in log and "exiting without committing" not in log


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_a_record_whose_dead_letter_is_refused_costs_one_restart(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path, guarantee: Guarantee
) -> None:
    """The DLQ topic takes records of 4 KB at most: the 20 KB dead letter of an oversized
    event is refused, the worker exits; after one restart at that offset it writes the
    minimal dead letter (no value) and moves on. Exactly-once: nothing is lost or repeated;
    at-least-once: nothing is lost (the example before it may come twice)."""
    config = fast_worker_config(
        **worker_topics(topic_name), data_dir=tmp_path / "data", processing_guarantee=guarantee
    )
    create_topics_with_a_small_dlq(kafka, config, max_record_bytes=4096)
    bad = pill(20_000)
    with ProcessGroup(tmp_path / "logs") as group:
        worker = start_worker(group, "worker", kafka, config)
        produce(kafka, config.input_topic, [(USER, good(1))])
        ((partition, offset),) = produce(kafka, config.input_topic, [(USER, bad)])
        produce(kafka, config.input_topic, [(USER, good(2)), (USER, good(3))])
        letters = read_topic(kafka, config.dlq_topic, lambda rs: len(rs) >= 1, 120)
        got = examples(kafka, config, 3)
        url = metrics_url(config)
        wait_until(lambda: restarts(url) == (1.0, 1.0), 30, "restart counters", [worker])
        group.check()  # the supervisor is still running it
        log = _log(worker)

    if guarantee == "exactly_once":  # read_committed: each once, the aborted try invisible
        assert got == ["g1", "g2", "g3"]
    else:
        assert sorted(set(got)) == ["g1", "g2", "g3"]
    assert len(letters) == 1
    letter = DeadLetter.from_record(letters[0].key, letters[0].value, letters[0].headers)
    assert letter.minimal and letter.code == "oversized" and letter.key == USER
    assert letter.is_original(bad) and letter.original_size == len(bad)
    assert (letter.source_partition, letter.source_offset) == (partition, offset)
    assert log.count(RESTARTED) == 1 and f"@{offset}" in log


def _log(child: Child) -> str:
    return child.log_file.read_text()


def test_a_record_that_no_dead_letter_can_describe_is_skipped_and_counted(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    """A DLQ topic that takes nothing (100 bytes): the dead letter, then the careful minimal
    one, then the minimal one are refused; the fourth start skips the record, counts it,
    and the stream goes on. The worker runs with --metrics-port 0 and --web-port 0."""
    config = fast_worker_config(**worker_topics(topic_name), data_dir=tmp_path / "data")
    config = replace(config, metrics_port=0, web_port=0)
    create_topics_with_a_small_dlq(kafka, config, max_record_bytes=100)
    with ProcessGroup(tmp_path / "logs") as group:
        worker = start_worker(group, "worker", kafka, config)
        wait_until(lambda: PRINTED.search(_log(worker)), 60, "the printed /metrics address",
                   [worker])  # fmt: skip
        match = PRINTED.search(_log(worker))
        assert match is not None
        url = f"http://127.0.0.1:{match[1]}/metrics"
        produce(kafka, config.input_topic, [(USER, good(1))])
        ((_, offset),) = produce(kafka, config.input_topic, [(USER, b"not json")])
        produce(kafka, config.input_topic, [(USER, good(2))])
        got = examples(kafka, config, 2)
        wait_until(lambda: metric(scrape(url), "recoil_stream_skipped_records_total") == 1,
                   120, "the skip", [worker])  # fmt: skip
        samples = scrape(url)  # the same port after three restarts
        group.check()
        log = _log(worker)

    assert got == ["g1", "g2"]
    assert metric(samples, "recoil_stream_worker_restarts_total") == 3
    assert metric(samples, "recoil_stream_same_offset_restarts_total") == 3
    assert f"skipping {config.input_topic}/" in log and f"@{offset}" in log
    assert len({m[1] for m in PRINTED.finditer(log)}) == 1  # one port for every start
    with pytest.raises(TimeoutError):  # nothing ever reached the DLQ
        read_topic(kafka, config.dlq_topic, lambda rs: len(rs) >= 1, 3)


# `recoil worker` whose processing raises (uncaught) on the value b"KILL": the supervisor
# runs this file again as its child, which runs the worker with the fault injected.
KILLER = """
import logging, os, sys
from recoil.cli import build_parser
from recoil.broker.args import kafka_settings
from recoil.commands.worker import config_from_args
from streams.supervisor import RESTARTS_ENV, supervise

if RESTARTS_ENV not in os.environ:
    sys.exit(supervise([sys.executable, *sys.argv]))
import streams.processor
from streams.worker import run_worker

logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
real = streams.processor.parse_event

def parse_event(raw):
    if bytes(raw) == b"KILL":
        raise RuntimeError("injected: processing this record always fails")
    return real(raw)

streams.processor.parse_event = parse_event
args = build_parser().parse_args(sys.argv[1:])
sys.exit(run_worker(config_from_args(args), kafka_settings(args)))
"""


def test_a_record_whose_processing_always_fails_costs_one_restart(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    """Not a refused send: the worker's own code raises on the record every time. After
    one restart at that offset it writes a minimal ``crash_loop`` dead letter."""
    config = fast_worker_config(**worker_topics(topic_name), data_dir=tmp_path / "data")
    create_topics(kafka, config)
    runner = tmp_path / "killer.py"
    runner.write_text(KILLER)
    argv = worker_command(kafka, config, supervised=False)
    with ProcessGroup(tmp_path / "logs") as group:
        worker = group.start("worker", [sys.executable, str(runner), *argv[3:]])
        produce(kafka, config.input_topic, [(USER, good(1))])
        ((partition, offset),) = produce(kafka, config.input_topic, [(USER, b"KILL")])
        produce(kafka, config.input_topic, [(USER, good(2))])
        letters = read_topic(kafka, config.dlq_topic, lambda rs: len(rs) >= 1, 120)
        got = examples(kafka, config, 2)
        url = metrics_url(config)
        wait_until(lambda: restarts(url) == (1.0, 1.0), 30, "restart counters", [worker])
        group.check()
        log = _log(worker)

    assert got == ["g1", "g2"]
    assert len(letters) == 1
    letter = DeadLetter.from_record(letters[0].key, letters[0].value, letters[0].headers)
    assert letter.minimal and letter.code == "crash_loop" and letter.is_original(b"KILL")
    assert "injected: processing this record always fails" in letter.reason
    assert (letter.source_partition, letter.source_offset) == (partition, offset)
    assert log.count(RESTARTED) == 1
