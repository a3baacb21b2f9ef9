"""One bad record, or one failed publish, never stops the continuous learner.

Real broker, real learner: good examples interleaved with records that are
undecodable, nested too deeply, oversized (in bytes and in history length) or
invalid (a NaN weight, a dwell bucket outside the table), and a snapshot store
whose first publish fails. The learner trains on every good example exactly
once, skips and counts each bad one by reason, and publishes on a later trigger.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

import learner.continuous_loop
from learner.continuous import LearnerConfig, SourceConfig, run_learner
from learner.metrics import LearnerMetrics
from learner.model import ModelConfig
from learner.snapshot import list_versions, load_snapshot
from learner.synthetic import synthetic_examples
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.topics import ensure_topics

pytestmark = pytest.mark.integration
torch.set_num_threads(1)

TINY = ModelConfig(embedding_dim=16, hidden_dim=16, max_len=20, dropout=0.0)


def _bad_records(template: dict[str, Any]) -> dict[str, tuple[str, bytes]]:
    """name -> (the reason the learner must give, the record)."""

    def variant(**changes: Any) -> bytes:
        return json.dumps({**template, **changes}).encode()

    row = template["history"][0]
    return {
        "not json": ("undecodable", b"{not json"),
        "nested": ("undecodable", b"[" * 5000 + b"]" * 5000),
        "not an example": ("undecodable", b'{"event_id": "x"}'),
        "huge": ("oversized", variant(event_id="huge", pad="x" * 200_000)),
        "long history": ("oversized", variant(event_id="long", history=[row] * 2000)),
        "nan weight": ("invalid", variant(event_id="nan", label_weight=float("nan"))),
        "bad bucket": ("invalid", variant(event_id="bucket", history=[[*row[:4], 99, *row[5:]]])),
    }


def test_bad_records_and_a_failed_publish_do_not_stop_the_learner(
    kafka: KafkaSettings,
    topic_name: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = topic_name("examples")
    ensure_topics(kafka, [topic], partitions=2)
    good = [
        dataclasses.replace(e, event_id=f"g-{e.event_id}")
        for e in synthetic_examples(num_users=6, events_per_user=40, num_items=60, seed=3)
    ]
    with_history = next(e for e in good if e.history)
    bad = _bad_records(with_history.to_dict())
    records = [(e.user_id, e.to_json()) for e in good]
    for n, (_, bad_record) in enumerate(bad.values()):  # spread through the stream
        records.insert(20 + 25 * n, ("bad", bad_record))
    producer = KafkaProducer(**kafka.kafka_python(), acks="all", max_request_size=4_000_000)
    for key, record in records:
        producer.send(topic, key=key.encode(), value=record)
    producer.flush()
    producer.close()

    real_publish = learner.continuous_loop.publish_snapshot
    calls = {"n": 0}

    def publish_failing_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        return real_publish(*args, **kwargs)

    monkeypatch.setattr(learner.continuous_loop, "publish_snapshot", publish_failing_once)
    config = LearnerConfig(
        store=tmp_path / "store", checkpoint_dir=tmp_path / "ckpt", model=TINY,
        snapshot_every_steps=4, snapshot_every_seconds=600, stop_when_idle_s=2.0,
        model_updates_topic=None, log_every_s=600,
    )  # fmt: skip
    source = SourceConfig(
        topic=topic, group="bad-input", batch_size=16, batch_timeout_s=0.2,
        max_example_bytes=100_000,
    )  # fmt: skip
    registry = CollectorRegistry()
    result = run_learner(kafka, config, source, LearnerMetrics(registry))

    assert result.examples == len(good) and result.duplicates == 0
    assert result.skipped == len(bad)
    lines = (config.checkpoint_dir / "trained.jsonl").read_text().splitlines()
    trained = [i for line in lines for i in json.loads(line)["event_ids"]]
    assert sorted(trained) == sorted(e.event_id for e in good)
    value = registry.get_sample_value
    for reason in ("undecodable", "oversized", "invalid"):
        expected = sum(1 for r, _ in bad.values() if r == reason)
        got = value("recoil_learner_skipped_examples_total", {"reason": reason})
        assert got == expected, reason
    assert value("recoil_learner_snapshot_failures_total", {"stage": "publish"}) == 1
    assert result.snapshot_failures == 1 and calls["n"] >= 2
    versions = [s.version for s in result.snapshots]
    assert versions and versions == list_versions(config.store)
    newest = load_snapshot(config.store)
    assert newest.step == result.steps
    assert newest.manifest["counts"]["examples"] == len(good)
