"""Serving's Prometheus metrics, created from monitoring's catalogue."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from monitoring.catalogue import Part, create_part


class ServingMetrics:
    """Requests by endpoint and status, latency, the snapshot version served, and the
    versions refused."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = create_part(Part.SERVING, registry)
        self.requests = m.counter("recoil_serving_requests_total")
        self.latency = m.histogram("recoil_serving_request_seconds")
        self.snapshot_version = m.gauge("recoil_serving_snapshot_version")
        self.snapshots_refused = m.counter("recoil_serving_snapshots_refused_total")
