"""A table of bad inputs: each lands in the DLQ with its reason, the good events around it flow.

Runs the at-least-once path with the in-memory store (the round-trip test covers
exactly-once with RocksDB).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import ProcessGroup
from recoil.core.records import TrainingExample
from streams.dlq import MAX_VALUE_BYTES, DeadLetter
from streams.harness import metric, produce, read_topic, scrape, start_worker, wait_until
from tests.support.streams import USER, metrics_url, small_at_least_once_config
from tests.support.streams import watched_event as good  # dora's event n, a positive, id g<n>

pytestmark = pytest.mark.integration


def changed(**fields: object) -> bytes:
    obj = json.loads(good(0))
    obj.update(fields)
    return json.dumps(obj).encode()


def without(name: str) -> bytes:
    obj = json.loads(good(0))
    del obj[name]
    return json.dumps(obj).encode()


# (key, value, expected code, a phrase of the reason)
BAD: list[tuple[bytes | None, bytes, str, str]] = [
    (USER, good(0)[:40], "invalid_json", "event is not JSON"),
    (USER, changed(dwell_seconds="12"), "wrong_type", "'dwell_seconds' must be a number"),
    (USER, changed(liked=1), "wrong_type", "'liked' must be true or false"),
    (USER, without("item_id"), "missing_field", "missing field 'item_id'"),
    (USER, changed(dwell_seconds=-3.0), "negative_dwell", "'dwell_seconds' is -3.0"),
    (USER, changed(note="x" * 200_000), "oversized", "the limit is 8192"),
    (USER, b'{"event_id": "\xff\xfe"}', "invalid_utf8", "event is not UTF-8"),
    (USER, changed(schema_version=99), "unknown_schema_version", "schema_version 99"),
    (USER, b"[1, 2, 3]", "not_an_object", "got array"),
    (USER, b"", "invalid_json", "event is not JSON"),
    (b"someone-else", good(0), "wrong_key", "is not the event's user_id"),
    (None, good(0), "wrong_key", "record has no key"),
]


def test_bad_inputs_go_to_the_dlq_with_reasons(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = small_at_least_once_config(topic_name, tmp_path / "data")
    # good 1, bad 1, good 2, bad 2, ... good 13: every bad one sits between good ones.
    records: list[tuple[bytes | None, bytes]] = []
    for n, (key, value, _, _) in enumerate(BAD, start=1):
        records += [(USER, good(n)), (key, value)]
    records.append((USER, good(len(BAD) + 1)))
    with ProcessGroup(tmp_path / "logs") as group:
        worker = start_worker(group, "worker", kafka, config)
        placed = produce(kafka, config.input_topic, records)
        letters = read_topic(kafka, config.dlq_topic, lambda rs: len(rs) >= len(BAD), 120)
        examples = read_topic(kafka, config.output_topic, lambda rs: len(rs) >= len(BAD) + 1, 60)
        url = metrics_url(config)
        wait_until(
            lambda: metric(scrape(url), "recoil_stream_dlq_events_total") == len(BAD),
            30, "DLQ counter", [worker],
        )  # fmt: skip
        samples = scrape(url)
        group.check()  # the worker is still running

    assert len(letters) == len(BAD)
    for letter_record, (key, value, code, phrase), (partition, offset) in zip(
        letters, BAD, placed[1::2], strict=True
    ):
        letter = DeadLetter.from_record(letter_record.key, letter_record.value,
                                        letter_record.headers)  # fmt: skip
        assert (letter.key, letter.value, letter.code) == (key, value[:MAX_VALUE_BYTES], code)
        assert letter.is_original(value) and letter.truncated == (len(value) > MAX_VALUE_BYTES)
        assert phrase in letter.reason
        assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
            config.input_topic, partition, offset,
        )  # fmt: skip
    assert sorted(TrainingExample.from_json(r.value).event_id for r in examples) == sorted(
        f"g{n}" for n in range(1, len(BAD) + 2)
    )
    codes = [code for _, _, code, _ in BAD]
    for code in set(codes):
        assert metric(samples, "recoil_stream_invalid_events_total", reason=code) == (
            codes.count(code)
        ), code
    assert metric(samples, "recoil_stream_events_total", outcome="invalid") == len(BAD)
    assert metric(samples, "recoil_stream_events_total", outcome="positive") == len(BAD) + 1
