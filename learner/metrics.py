"""The continuous learner's Prometheus metrics, created from monitoring's catalogue.

One instance per process, registered on the registry it is given; ``recoil
learn`` serves that registry on ``/metrics`` (127.0.0.1 by default).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from monitoring.catalogue import Part, create_part


class LearnerMetrics:
    """Steps, examples, throughput, loss by term, snapshots and consumer lag.

    Created from monitoring's catalogue; the skipped-example and snapshot-failure
    series exist from the start, at 0, for the alerts.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        m = create_part(Part.LEARNER, registry)
        self.steps = m.counter("recoil_learner_steps_total")
        self.examples = m.counter("recoil_learner_examples_total")
        self.examples_per_second = m.gauge("recoil_learner_examples_per_second")
        self.loss = m.gauge("recoil_learner_loss")
        self.snapshot_version = m.gauge("recoil_learner_snapshot_version")
        self.snapshot_timestamp = m.gauge("recoil_learner_snapshot_timestamp_seconds")
        self.snapshot_publish_seconds = m.histogram("recoil_learner_snapshot_publish_seconds")
        self.consumer_lag = m.gauge("recoil_learner_consumer_lag_messages")
        self._lag_partitions: set[int] = set()  # partitions with a lag series
        self.assigned_partitions = m.gauge("recoil_learner_assigned_partitions")
        self.group_rejoins = m.counter("recoil_learner_group_rejoins_total")
        self._rejoins = 0  # the source's count the counter has reached
        self.last_step_timestamp = m.gauge("recoil_learner_last_step_timestamp_seconds")
        self.skipped_examples = m.counter("recoil_learner_skipped_examples_total")
        self.snapshot_failures = m.counter("recoil_learner_snapshot_failures_total")
        self._throughput = Throughput()

    def record_step(
        self, examples: int, losses: dict[str, float], now: float | None = None
    ) -> None:
        """One optimizer step on ``examples`` examples with these loss terms."""
        now = time.time() if now is None else now
        self.steps.inc()
        self.examples.inc(examples)
        self.last_step_timestamp.set(now)
        for term, value in losses.items():
            self.loss.labels(term=term).set(value)
        self.examples_per_second.set(self._throughput.add(examples, now))

    def record_consumed(self, examples: int, now: float | None = None) -> None:
        """Examples consumed without a step (all dropped by the arm's label selection)."""
        now = time.time() if now is None else now
        self.examples.inc(examples)
        self.examples_per_second.set(self._throughput.add(examples, now))

    def record_snapshot(self, version: int, created_at: float, publish_seconds: float) -> None:
        self.snapshot_version.set(version)
        self.snapshot_timestamp.set(created_at)
        self.snapshot_publish_seconds.observe(publish_seconds)

    def record_skipped(self, skipped: Iterable[tuple[str, int]]) -> None:
        """Records skipped, as (reason, count) pairs (``learner.example_check``)."""
        for reason, count in skipped:
            self.skipped_examples.labels(reason=reason).inc(count)

    def record_snapshot_failure(self, stage: str) -> None:
        """A publish failed at ``stage``: checkpoint, publish or announce."""
        self.snapshot_failures.labels(stage=stage).inc()

    def record_assignment(self, held: int, rejoins: int) -> None:
        """``held`` partitions now; ``rejoins`` forced so far (the counter follows it)."""
        self.assigned_partitions.set(held)
        if rejoins > self._rejoins:
            self.group_rejoins.inc(rejoins - self._rejoins)
            self._rejoins = rejoins

    def record_lag(self, lag: dict[int, int]) -> None:
        """Lag of the partitions held now; the series of partitions no longer held go
        (a learner that lost them would otherwise show their last lag for good)."""
        for gone in self._lag_partitions - lag.keys():
            self.consumer_lag.remove(str(gone))
        self._lag_partitions = set(lag)
        for partition, messages in lag.items():
            self.consumer_lag.labels(partition=str(partition)).set(messages)


class Throughput:
    """Examples per second over a sliding window (the last ``window`` seconds)."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window  # long enough to smooth batch bursts, short enough to track load
        self._events: deque[tuple[float, int]] = deque()
        self._total = 0
        self._started: float | None = None

    def add(self, count: int, now: float) -> float:
        """Record ``count`` at ``now``; return the rate over the window ending at ``now``
        (over the time since the first record while less than a window has passed)."""
        if self._started is None:
            self._started = now
        self._events.append((now, count))
        self._total += count
        while self._events and self._events[0][0] <= now - self.window:
            self._total -= self._events.popleft()[1]
        span = min(self.window, max(now - self._started, 1.0))
        return self._total / span
