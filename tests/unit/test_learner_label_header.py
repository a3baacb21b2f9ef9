"""Records of kinds the arm does not train are read from their label header alone.

The stream workers put each example without its history in the record's
``LABEL_HEADER``. A learner that does not train skips (the default arm) takes those
records from the header, never parsing the ~2 KB value: the same event ids, offsets
and labels as reading them whole, with an empty history. Records of trained kinds,
and records without a usable header, are read whole.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.learner_profile import MemoryConsumer, WorkerRecord
from learner.kafka_source import KafkaExampleSource, RawBatch, SourceConfig
from recoil.core.records import LABEL_HEADER, TrainingExample
from tests.unit.test_learner_example_decoder import _examples

CONFIG = SourceConfig(
    topic="examples", batch_size=1000, catch_up_batch_size=1000, batch_timeout_s=0.01,
    idle_tick_s=0.01, poll_timeout_ms=1,
)  # fmt: skip


def _record(example: TrainingExample, header: bytes | None = None) -> WorkerRecord:
    label = example.label_json() if header is None else header
    return WorkerRecord(example.user_id, example.to_json(), [(LABEL_HEADER, label)])


def _take(records: list[WorkerRecord], label_only: set[str]) -> RawBatch:
    consumer = MemoryConsumer(CONFIG.topic, records, partitions=1)
    source = KafkaExampleSource(consumer, CONFIG, label_only=label_only)
    batch = source.next_batch()
    assert not source.next_batch().examples  # everything came in the first batch
    return batch


def test_untrained_kinds_come_from_the_header_with_the_same_ids_and_labels() -> None:
    examples = _examples(users=3, per_user=40)
    kinds = {e.label_kind for e in examples}
    assert kinds == {"positive", "skip", "dislike"}
    records = [_record(e) for e in examples]
    whole = _take(records, label_only=set())
    light = _take(records, label_only={"skip"})
    assert whole.examples == tuple(examples)
    assert light.offsets == whole.offsets
    assert [e.event_id for e in light.examples] == [e.event_id for e in examples]
    for got, example in zip(light.examples, examples, strict=True):
        if example.label_kind == "skip":
            assert got == dataclasses.replace(example, history=())
        else:
            assert got == example


def test_without_label_only_kinds_the_header_is_not_read() -> None:
    examples = _examples(users=1, per_user=20)
    records = [_record(e, header=b"not json") for e in examples]
    assert _take(records, label_only=set()).examples == tuple(examples)


def test_a_record_without_a_usable_header_is_read_whole() -> None:
    examples = [e for e in _examples(users=1, per_user=40) if e.label_kind == "skip"]
    assert len(examples) >= 4
    bad = examples[1].label_json().replace(b'"label_kind":"skip"', b'"label_kind":"nope"')
    null: Any = None  # Kafka allows a header without a value
    records = [
        WorkerRecord(examples[0].user_id, examples[0].to_json(), []),  # another producer
        _record(examples[1], header=bad),  # not a valid example: the value decides
        _record(examples[2], header=b"\xff{"),  # not JSON
        WorkerRecord(examples[3].user_id, examples[3].to_json(), [(LABEL_HEADER, null)]),
    ]
    assert _take(records, label_only={"skip"}).examples == tuple(examples[:4])


def test_a_header_of_a_trained_kind_means_the_value_is_read() -> None:
    example = next(e for e in _examples(users=1, per_user=40) if e.label_kind == "positive")
    assert example.history
    assert _take([_record(example)], label_only={"skip"}).examples == (example,)


def test_an_untrained_records_value_is_not_read_at_all() -> None:
    # the price of not parsing it: a bad value behind a good header is taken, untrained
    example = next(e for e in _examples(users=1, per_user=40) if e.label_kind == "skip")
    record = WorkerRecord(example.user_id, b"{broken", [(LABEL_HEADER, example.label_json())])
    batch = _take([record], label_only={"skip"})
    assert batch.examples == (dataclasses.replace(example, history=()),)
    assert batch.invalid == 0
    assert _take([record], label_only=set()).skipped == {"undecodable": 1}
