"""Serving's Prometheus metrics (names from monitoring's catalogue)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """Requests by endpoint and status, latency, and the snapshot version served."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "recoil_serving_requests_total",
            "Recommend API requests by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "recoil_serving_request_seconds",
            "Recommend API request latency.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.snapshot_version = Gauge(
            "recoil_serving_snapshot_version",
            "Version of the model snapshot being served.",
            registry=registry,
        )
