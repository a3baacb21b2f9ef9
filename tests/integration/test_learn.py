"""The continuous learner on the real broker: consumes, dedupes, publishes, commits, resumes."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from learner.continuous import LearnerConfig, SourceConfig, run_learner
from learner.metrics import LearnerMetrics
from learner.model import ModelConfig
from learner.snapshot import list_versions, load_snapshot
from learner.synthetic import synthetic_examples
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.records import TrainingExample
from recoil.core.topics import ensure_topics

pytestmark = pytest.mark.integration
torch.set_num_threads(1)

PARTITIONS = 2
TINY = ModelConfig(embedding_dim=16, hidden_dim=16, max_len=20, dropout=0.0)


def _examples(prefix: str, num_items: int, seed: int) -> list[TrainingExample]:
    examples = synthetic_examples(num_users=6, events_per_user=40, num_items=num_items, seed=seed)
    return [dataclasses.replace(e, event_id=f"{prefix}-{e.event_id}") for e in examples]


def _produce(kafka: KafkaSettings, topic: str, records: list[bytes], keys: list[str]) -> None:
    producer = KafkaProducer(**kafka.kafka_python(), acks="all", linger_ms=5)
    for key, value in zip(keys, records, strict=True):
        producer.send(topic, key=key.encode(), value=value)
    producer.flush()
    producer.close()


def _lineage(checkpoint_dir: Path) -> list[str]:
    lines = (checkpoint_dir / "trained.jsonl").read_text().splitlines()
    return [i for line in lines for i in json.loads(line)["event_ids"]]


def _committed(kafka: KafkaSettings, topic: str, group: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(**kafka.kafka_python(), group_id=group, enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        consumer.close()


def _end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(**kafka.kafka_python())
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def _announcements(kafka: KafkaSettings, topic: str) -> list[dict[str, object]]:
    consumer = KafkaConsumer(
        topic, **kafka.kafka_python(), auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        return [json.loads(r.value) for r in consumer]
    finally:
        consumer.close()


def test_learner_consumes_publishes_commits_and_resumes(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    topic, updates, group = topic_name("examples"), topic_name("updates"), "learner-test"
    ensure_topics(kafka, [topic, updates], partitions=PARTITIONS)
    first = _examples("a", num_items=60, seed=1)
    redelivered = first[:5]  # the streams side is at-least-once
    records = [e.to_json() for e in first + redelivered] + [b"{not json"]
    _produce(kafka, topic, records, [e.user_id for e in first + redelivered] + ["junk"])

    config = LearnerConfig(
        store=tmp_path / "store", checkpoint_dir=tmp_path / "ckpt", model=TINY,
        snapshot_every_steps=4, snapshot_every_seconds=600, stop_when_idle_s=2.0,
        model_updates_topic=updates, log_every_s=600,
    )  # fmt: skip
    source = SourceConfig(topic=topic, group=group, batch_size=16, batch_timeout_s=0.2)
    registry = CollectorRegistry()
    result = run_learner(kafka, config, source, LearnerMetrics(registry))

    assert result.resumed_from_step is None
    assert result.examples == len(first) and result.duplicates == len(redelivered)
    assert result.steps >= len(first) // 16 and len(result.snapshots) >= 2
    versions = [s.version for s in result.snapshots]
    assert versions == list(range(1, len(versions) + 1)) == list_versions(config.store)
    assert sorted(_lineage(config.checkpoint_dir)) == sorted(e.event_id for e in first)
    ends = _end_offsets(kafka, topic)
    assert result.offsets == ends
    assert _committed(kafka, topic, group) == ends
    assert [a["version"] for a in _announcements(kafka, updates)] == versions
    value = registry.get_sample_value
    assert value("recoil_learner_steps_total") == result.steps
    assert value("recoil_learner_examples_total") == len(first)
    assert value("recoil_learner_snapshot_version") == versions[-1]
    assert value("recoil_learner_snapshot_publish_seconds_count") == len(versions)
    assert (value("recoil_learner_loss", {"term": "total"}) or 0.0) > 0
    for p in range(PARTITIONS):
        assert value("recoil_learner_consumer_lag_messages", {"partition": str(p)}) == 0
    last = load_snapshot(config.store)
    assert last.step == result.steps and last.offsets == ends
    assert last.manifest["counts"]["examples"] == len(first)

    # More examples, some about items never seen before; a restart resumes exactly.
    second = _examples("b", num_items=90, seed=2)
    fresh = {e.label_item_id for e in second} - set(last.item_ids())
    assert fresh, "the second batch must bring new items"
    _produce(kafka, topic, [e.to_json() for e in second], [e.user_id for e in second])
    again = run_learner(kafka, config, source, LearnerMetrics(CollectorRegistry()))

    assert again.resumed_from_step == result.steps
    assert again.examples == len(second) and again.duplicates == 0
    assert again.snapshots and again.snapshots[0].version == versions[-1] + 1
    assert sorted(_lineage(config.checkpoint_dir)) == sorted(e.event_id for e in first + second)
    newest = load_snapshot(config.store)
    assert fresh <= set(newest.item_ids())
    assert newest.step == again.steps > result.steps
    assert newest.manifest["counts"]["examples"] == len(first) + len(second)
    assert again.offsets == _end_offsets(kafka, topic) == _committed(kafka, topic, group)
    item = sorted(fresh)[0]
    assert newest.item_meta(item) is not None
    assert len(newest.recommend([list(second[-1].history)], k=5)[0]) == 5

    # The checkpoint is lost: a new model trains on everything retained, whatever the
    # group committed, and its snapshots still get higher versions than the old model's.
    shutil.rmtree(config.checkpoint_dir)
    fresh_run = run_learner(kafka, config, source, LearnerMetrics(CollectorRegistry()))
    assert fresh_run.resumed_from_step is None
    assert fresh_run.examples == len(first) + len(second)
    assert fresh_run.duplicates == len(redelivered)
    assert fresh_run.snapshots[0].version == again.snapshots[-1].version + 1
    assert sorted(_lineage(config.checkpoint_dir)) == sorted(e.event_id for e in first + second)
