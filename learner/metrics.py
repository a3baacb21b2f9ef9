"""The continuous learner's Prometheus metrics (names as in monitoring's catalogue).

One instance per process, registered on the registry it is given; ``recoil
learn`` serves that registry on ``/metrics`` (127.0.0.1 by default).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from learner.example_check import SKIP_REASONS

LOSS_TERMS = ("positive", "not_to_recommend", "total")
SNAPSHOT_STAGES = ("checkpoint", "publish", "announce")  # where a snapshot publish can fail
PUBLISH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class LearnerMetrics:
    """Steps, examples, throughput, loss by term, snapshots and consumer lag."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.steps = Counter(
            "recoil_learner_steps_total", "Optimizer steps taken.", registry=registry
        )
        self.examples = Counter(
            "recoil_learner_examples_total", "Training examples consumed.", registry=registry
        )
        self.examples_per_second = Gauge(
            "recoil_learner_examples_per_second",
            "Training throughput over the last interval (rate() of examples_total is preferred).",
            registry=registry,
        )
        self.loss = Gauge(
            "recoil_learner_loss",
            "Mean loss of the last step, by term of Eq. 1.",
            ["term"],
            registry=registry,
        )
        self.snapshot_version = Gauge(
            "recoil_learner_snapshot_version",
            "Version of the last published snapshot.",
            registry=registry,
        )
        self.snapshot_timestamp = Gauge(
            "recoil_learner_snapshot_timestamp_seconds",
            "Unix time of the last snapshot publish.",
            registry=registry,
        )
        self.snapshot_publish_seconds = Histogram(
            "recoil_learner_snapshot_publish_seconds",
            "Time to write, verify and publish one snapshot.",
            buckets=PUBLISH_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "recoil_learner_consumer_lag_messages",
            "training-examples messages not yet consumed by the learner.",
            ["partition"],
            registry=registry,
        )
        self.last_step_timestamp = Gauge(
            "recoil_learner_last_step_timestamp_seconds",
            "Unix time of the last optimizer step.",
            registry=registry,
        )
        self.skipped_examples = Counter(
            "recoil_learner_skipped_examples_total",
            "training-examples records skipped as oversized, undecodable or invalid.",
            ["reason"],
            registry=registry,
        )
        self.snapshot_failures = Counter(
            "recoil_learner_snapshot_failures_total",
            "Snapshot publishes that failed (training went on), by the stage that failed.",
            ["stage"],
            registry=registry,
        )
        for reason in SKIP_REASONS:  # every series exists from the start, at 0, for alerts
            self.skipped_examples.labels(reason=reason)
        for stage in SNAPSHOT_STAGES:
            self.snapshot_failures.labels(stage=stage)
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

    def record_lag(self, lag: dict[int, int]) -> None:
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
