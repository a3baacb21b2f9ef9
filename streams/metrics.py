"""The stream worker's Prometheus metrics, created from monitoring's catalogue.

Every metric lives in the registry passed in, so tests and workers never share
the global default registry. Names, help texts, labels and buckets are the
catalogue's (monitoring/catalogue.py); every labelled counter series exists
from the start, at 0.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry

from monitoring.catalogue import Part, create_part


class StreamMetrics:
    """Counters, gauges and the latency histogram of one stream worker."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        m = create_part(Part.STREAMS, registry)
        self.events = m.counter("recoil_stream_events_total")
        self.invalid_events = m.counter("recoil_stream_invalid_events_total")
        self.dlq_events = m.counter("recoil_stream_dlq_events_total")
        self.training_examples = m.counter("recoil_stream_training_examples_total")
        self.processing_seconds = m.histogram("recoil_stream_processing_seconds")
        self.history_users = m.gauge("recoil_stream_history_users")
        self.consumer_lag = m.gauge("recoil_stream_consumer_lag_messages")
        # Crash-only recovery and the crash-loop rule (streams/crashloop.py). These count
        # across restarts: the worker starts them at the supervisor's restart count and
        # at the counts kept in its crash note, so they never fall back to zero.
        self.worker_restarts = m.counter("recoil_stream_worker_restarts_total")
        self.same_offset_restarts = m.counter("recoil_stream_same_offset_restarts_total")
        self.skipped_records = m.counter("recoil_stream_skipped_records_total")
        # batches streams.tolerant_records read again (process-wide, all of aiokafka)
        self.reread_batches = m.counter("recoil_stream_reread_batches_total")
        self.lost_records = m.counter("recoil_stream_lost_records_total")

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(0, lag))

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the lag series of a partition this worker no longer owns."""
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))
