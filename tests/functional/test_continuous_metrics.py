"""LearnerMetrics: exactly the catalogued names, exact values, served over HTTP."""

from __future__ import annotations

import re
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from learner.metrics import LearnerMetrics, Throughput

NAMES = {
    "recoil_learner_steps": "counter",
    "recoil_learner_examples": "counter",
    "recoil_learner_examples_per_second": "gauge",
    "recoil_learner_loss": "gauge",
    "recoil_learner_snapshot_version": "gauge",
    "recoil_learner_snapshot_timestamp_seconds": "gauge",
    "recoil_learner_snapshot_publish_seconds": "histogram",
    "recoil_learner_consumer_lag_messages": "gauge",
    "recoil_learner_assigned_partitions": "gauge",
    "recoil_learner_group_rejoins": "counter",
    "recoil_learner_last_step_timestamp_seconds": "gauge",
    "recoil_learner_skipped_examples": "counter",
    "recoil_learner_snapshot_failures": "counter",
}


def test_exactly_the_specified_metric_families() -> None:
    registry = CollectorRegistry()
    LearnerMetrics(registry)
    assert {f.name: f.type for f in registry.collect()} == NAMES


def test_recorded_values_are_exact() -> None:
    registry = CollectorRegistry()
    metrics = LearnerMetrics(registry)
    metrics.record_step(32, {"positive": 2.5, "not_to_recommend": 0.25, "total": 2.75}, now=100.0)
    metrics.record_step(16, {"positive": 2.0, "not_to_recommend": 0.5, "total": 2.5}, now=102.0)
    metrics.record_consumed(4, now=104.0)
    metrics.record_snapshot(7, created_at=1_700_000_000.0, publish_seconds=0.3)
    metrics.record_lag({0: 5, 1: 0})
    metrics.record_skipped([("undecodable", 2), ("oversized", 1)])
    metrics.record_skipped([("undecodable", 1)])
    metrics.record_snapshot_failure("publish")
    metrics.record_assignment(4, rejoins=0)
    metrics.record_assignment(0, rejoins=2)  # the source's running count, not an increment
    metrics.record_assignment(2, rejoins=2)
    value = registry.get_sample_value
    assert value("recoil_learner_assigned_partitions") == 2
    assert value("recoil_learner_group_rejoins_total") == 2
    assert value("recoil_learner_skipped_examples_total", {"reason": "undecodable"}) == 3
    assert value("recoil_learner_skipped_examples_total", {"reason": "oversized"}) == 1
    assert value("recoil_learner_skipped_examples_total", {"reason": "invalid"}) == 0
    assert value("recoil_learner_snapshot_failures_total", {"stage": "publish"}) == 1
    assert value("recoil_learner_snapshot_failures_total", {"stage": "announce"}) == 0
    assert value("recoil_learner_steps_total") == 2
    assert value("recoil_learner_examples_total") == 52
    assert value("recoil_learner_examples_per_second") == 52 / 4  # 4 s since the first step
    assert value("recoil_learner_loss", {"term": "positive"}) == 2.0
    assert value("recoil_learner_loss", {"term": "not_to_recommend"}) == 0.5
    assert value("recoil_learner_loss", {"term": "total"}) == 2.5
    assert value("recoil_learner_last_step_timestamp_seconds") == 102.0
    assert value("recoil_learner_snapshot_version") == 7
    assert value("recoil_learner_snapshot_timestamp_seconds") == 1_700_000_000.0
    assert value("recoil_learner_snapshot_publish_seconds_count") == 1
    assert value("recoil_learner_snapshot_publish_seconds_bucket", {"le": "0.5"}) == 1
    assert value("recoil_learner_snapshot_publish_seconds_bucket", {"le": "0.25"}) == 0
    assert value("recoil_learner_consumer_lag_messages", {"partition": "0"}) == 5
    assert value("recoil_learner_consumer_lag_messages", {"partition": "1"}) == 0
    metrics.record_lag({1: 3})  # partition 0 was revoked: its series goes
    assert value("recoil_learner_consumer_lag_messages", {"partition": "0"}) is None
    assert value("recoil_learner_consumer_lag_messages", {"partition": "1"}) == 3


@pytest.mark.parametrize(
    ("events", "rate"),
    [
        ([(0.0, 10)], 10.0),  # under a second in: divide by one second, not by zero
        ([(0.0, 10), (2.0, 10)], 10.0),  # 20 over 2 s
        ([(0.0, 100), (5.0, 10), (12.0, 10)], 2.0),  # the window (10 s) dropped the 100
    ],
)
def test_throughput_over_a_sliding_window(events: list[tuple[float, int]], rate: float) -> None:
    throughput = Throughput(window=10.0)
    results = [throughput.add(count, now) for now, count in events]
    assert results[-1] == rate


def test_metrics_are_served_on_loopback() -> None:
    registry = CollectorRegistry()
    metrics = LearnerMetrics(registry)
    metrics.record_step(8, {"total": 1.5}, now=1.0)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        server.shutdown()
        thread.join(5)
    assert re.search(r"^recoil_learner_steps_total 1\.0$", text, re.MULTILINE)
    assert re.search(r'^recoil_learner_loss\{term="total"\} 1\.5$', text, re.MULTILINE)
