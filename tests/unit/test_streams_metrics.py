"""The worker's metrics: exactly the catalogued names, every labelled series from the start."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from monitoring.catalogue import LOST_CAUSES
from recoil.core.events import INVALID_CODES
from streams.metrics import StreamMetrics
from streams.state import OUTCOMES


def test_exact_metric_names_and_types() -> None:
    registry = CollectorRegistry()
    StreamMetrics(registry)
    found = {m.name: m.type for m in registry.collect()}
    assert found == {
        "recoil_stream_events": "counter",
        "recoil_stream_invalid_events": "counter",
        "recoil_stream_dlq_events": "counter",
        "recoil_stream_training_examples": "counter",
        "recoil_stream_processing_seconds": "histogram",
        "recoil_stream_history_users": "gauge",
        "recoil_stream_consumer_lag_messages": "gauge",
        "recoil_stream_worker_restarts": "counter",
        "recoil_stream_same_offset_restarts": "counter",
        "recoil_stream_skipped_records": "counter",
        "recoil_stream_reread_batches": "counter",
        "recoil_stream_lost_records": "counter",
    }


def test_series_exist_at_zero_and_count() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    for outcome in OUTCOMES:
        assert registry.get_sample_value("recoil_stream_events_total", {"outcome": outcome}) == 0
    for code in INVALID_CODES:
        value = registry.get_sample_value("recoil_stream_invalid_events_total", {"reason": code})
        assert value == 0
    for cause in LOST_CAUSES:
        value = registry.get_sample_value("recoil_stream_lost_records_total", {"cause": cause})
        assert value == 0
    metrics.events.labels(outcome="skip").inc(3)
    metrics.processing_seconds.observe(0.0003)
    assert registry.get_sample_value("recoil_stream_events_total", {"outcome": "skip"}) == 3
    assert (
        registry.get_sample_value("recoil_stream_processing_seconds_bucket", {"le": "0.0005"}) == 1
    )


def test_lag_is_per_partition_and_forgotten_on_revoke() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    metrics.set_lag("interactions", 2, 17)
    metrics.set_lag("interactions", 3, -4)  # a stale high-water mark: never negative
    labels = {"topic": "interactions", "partition": "2"}
    assert registry.get_sample_value("recoil_stream_consumer_lag_messages", labels) == 17
    assert (
        registry.get_sample_value(
            "recoil_stream_consumer_lag_messages", {"topic": "interactions", "partition": "3"}
        )
        == 0
    )
    metrics.forget_partition("interactions", 2)
    metrics.forget_partition("interactions", 9)  # never set: no error
    assert registry.get_sample_value("recoil_stream_consumer_lag_messages", labels) is None
