"""The stream worker's Prometheus metrics (names fixed by the metric catalogue).

Every metric lives in the registry passed in, so tests and workers never share
the global default registry.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from recoil.core.events import INVALID_CODES
from recoil.core.records import LABEL_KINDS
from streams.state import OUTCOMES

# Per-event latency (decode -> sends queued) is tens of microseconds to a few
# milliseconds; the upper buckets catch stalls (GC, a slow broker, a rebalance).
PROCESSING_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip


class StreamMetrics:
    """Counters, gauges and the latency histogram of one stream worker."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "recoil_stream_events",
            "Interaction events read from the input topic, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.invalid_events = Counter(
            "recoil_stream_invalid_events",
            "Invalid interaction events, by Invalid.code",
            ["reason"],
            registry=registry,
        )
        self.dlq_events = Counter(
            "recoil_stream_dlq_events",
            "Events written to the dead-letter topic",
            registry=registry,
        )
        self.training_examples = Counter(
            "recoil_stream_training_examples",
            "Training examples written, by label kind",
            ["kind"],
            registry=registry,
        )
        self.processing_seconds = Histogram(
            "recoil_stream_processing_seconds",
            "Per-event processing time, decode to send",
            buckets=PROCESSING_BUCKETS,
            registry=registry,
        )
        self.history_users = Gauge(
            "recoil_stream_history_users",
            "Users in this worker's history table (its assigned partitions)",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "recoil_stream_consumer_lag_messages",
            "Messages between the last processed offset and the end of the partition",
            ["topic", "partition"],
            registry=registry,
        )
        # Crash-only recovery and the crash-loop rule (streams/crashloop.py). These count
        # across restarts: the worker starts them at the supervisor's restart count and
        # at the counts kept in its crash note, so they never fall back to zero.
        self.worker_restarts = Counter(
            "recoil_stream_worker_restarts",
            "Restarts of the Faust worker process by its supervisor (recoil worker)",
            registry=registry,
        )
        self.same_offset_restarts = Counter(
            "recoil_stream_same_offset_restarts",
            "Restarts that came back to the input record the worker had died at",
            registry=registry,
        )
        self.skipped_records = Counter(
            "recoil_stream_skipped_records",
            "Input records skipped without a dead letter: even the minimal one failed",
            registry=registry,
        )
        # Every labelled series exists from the start (at 0), so rate() and
        # absent() behave before the first event of a kind arrives.
        for outcome in OUTCOMES:
            self.events.labels(outcome=outcome)
        for code in INVALID_CODES:
            self.invalid_events.labels(reason=code)
        for kind in LABEL_KINDS:
            self.training_examples.labels(kind=kind)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(0, lag))

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the lag series of a partition this worker no longer owns."""
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))
