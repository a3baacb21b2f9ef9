"""An exporter of every catalogued metric with plausible, moving values.

For checking the rules, dashboards and ``recoil report`` against a real
Prometheus without running the loop, and for looking at the Grafana
dashboards on a laptop. It is sample data, not a measurement: the values are
drawn from a seeded generator around the paper's figures.

    python -m monitoring.synthetic --port 9101 [--part streams] [--seed 0]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server

from monitoring import catalogue
from monitoring.catalogue import LOST_CAUSES, Part
from recoil.core.events import INVALID_CODES
from recoil.core.records import LABEL_KINDS
from recoil.core.topics import INTERACTIONS

ARMS = {"feature_and_labels": -0.62, "no_signal": -0.02}  # responsiveness each arm approaches
EVENT_RATES = {  # events per second by outcome
    "positive": 40.0,
    "skip": 25.0,
    "dislike": 1.5,
    "none": 20.0,
    "invalid": 0.5,
    "duplicate": 0.3,
    "out_of_order": 0.1,
}
RESPONSE_SHARES = {
    "like": 0.1,
    "long_dwell": 0.4,
    "short_dwell": 0.15,
    "skip": 0.33,
    "dislike": 0.02,
}


@dataclass
class SyntheticExporter:
    """Advances every metric of the chosen parts by one tick of ``dt`` seconds."""

    registry: CollectorRegistry
    parts: tuple[Part, ...]
    rng: np.random.Generator
    snapshot_every: float = 20.0  # seconds between simulated snapshot versions
    metrics: dict[str, Any] = field(init=False)
    version: int = field(init=False, default=0)
    last_snapshot: float = field(init=False, default=0.0)
    steps: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        chosen = tuple(m for m in catalogue.CATALOGUE if m.part in self.parts)
        self.metrics = catalogue.create_all(self.registry, chosen)

    def _has(self, part: Part) -> bool:
        return part in self.parts

    def tick(self, now: float, dt: float) -> None:
        if now - self.last_snapshot >= self.snapshot_every:
            self.version += 1
            self.last_snapshot = now
            self._publish(now)
        if self._has(Part.STREAMS):
            self._streams(dt)
        if self._has(Part.LEARNER):
            self._learner(now, dt)
        if self._has(Part.SERVING):
            self._serving(dt)
        if self._has(Part.SIMULATOR):
            self._simulator(dt)

    def _count(self, mean: float) -> int:
        return int(self.rng.poisson(mean))

    def _streams(self, dt: float) -> None:
        m, rng = self.metrics, self.rng
        for outcome, rate in EVENT_RATES.items():
            n = self._count(rate * dt)
            m["recoil_stream_events_total"].labels(outcome=outcome).inc(n)
            if outcome == "invalid":
                m["recoil_stream_dlq_events_total"].inc(n)
                for _ in range(n):
                    reason = rng.choice(INVALID_CODES)
                    m["recoil_stream_invalid_events_total"].labels(reason=str(reason)).inc()
            elif outcome in LABEL_KINDS:
                m["recoil_stream_training_examples_total"].labels(kind=outcome).inc(n)
        for cause in LOST_CAUSES:  # rare: records Faust dropped, re-read
            m["recoil_stream_lost_records_total"].labels(cause=cause).inc(self._count(0.01 * dt))
        for seconds in rng.lognormal(np.log(0.002), 0.6, size=self._count(20 * dt)):
            m["recoil_stream_processing_seconds"].observe(float(seconds))
        m["recoil_stream_history_users"].set(500 + 10 * self.version)
        for partition in range(4):
            m["recoil_stream_consumer_lag_messages"].labels(
                topic=INTERACTIONS, partition=str(partition)
            ).set(self._count(8))

    def _learner(self, now: float, dt: float) -> None:
        m = self.metrics
        steps = max(1, self._count(5 * dt))
        self.steps += steps
        m["recoil_learner_steps_total"].inc(steps)
        m["recoil_learner_examples_total"].inc(steps * 64)
        m["recoil_learner_examples_per_second"].set(steps * 64 / dt)
        decay = np.exp(-self.steps / 2000)
        positive = 3.0 + 4.0 * decay + self.rng.normal(0, 0.05)
        negative = 0.05 + 0.3 * decay + abs(self.rng.normal(0, 0.01))
        m["recoil_learner_loss"].labels(term="positive").set(positive)
        m["recoil_learner_loss"].labels(term="not_to_recommend").set(negative)
        m["recoil_learner_loss"].labels(term="total").set(positive + negative)
        m["recoil_learner_last_step_timestamp_seconds"].set(now)
        # rare bad inputs and failed publishes: the counters the learner's alerts read
        reason = str(self.rng.choice(catalogue.SKIP_REASONS))
        m["recoil_learner_skipped_examples_total"].labels(reason=reason).inc(self._count(0.05 * dt))
        stage = str(self.rng.choice(catalogue.SNAPSHOT_STAGES))
        m["recoil_learner_snapshot_failures_total"].labels(stage=stage).inc(self._count(0.01 * dt))
        for partition in range(4):
            m["recoil_learner_consumer_lag_messages"].labels(partition=str(partition)).set(
                self._count(30)
            )

    def _serving(self, dt: float) -> None:
        m, rng = self.metrics, self.rng
        for endpoint, rate in (("/recommend/{user_id}", 30.0), ("/recommend", 10.0)):
            ok = self._count(rate * dt)
            m["recoil_serving_requests_total"].labels(endpoint=endpoint, status="200").inc(ok)
            bad = self._count(0.2 * dt)
            m["recoil_serving_requests_total"].labels(endpoint=endpoint, status="400").inc(bad)
            for seconds in rng.lognormal(np.log(0.004), 0.5, size=ok):
                m["recoil_serving_request_seconds"].labels(endpoint=endpoint).observe(seconds)
        # rare: a snapshot version that fails to load (RecoilServingSnapshotRefused)
        m["recoil_serving_snapshots_refused_total"].inc(self._count(0.002 * dt))

    def _simulator(self, dt: float) -> None:
        m, rng = self.metrics, self.rng
        for arm in ARMS:
            for response, share in RESPONSE_SHARES.items():
                m["recoil_sim_impressions_total"].labels(arm=arm, response=response).inc(
                    self._count(50 * share * dt)
                )
        for seconds in rng.lognormal(np.log(0.06), 0.4, size=self._count(2 * dt)):
            m["recoil_freshness_feature_seconds"].observe(float(seconds))
        for seconds in rng.lognormal(np.log(12.0), 0.3, size=self._count(1 * dt)):
            m["recoil_freshness_snapshot_seconds"].observe(float(seconds))

    def _ab(self, arm: str, dislike: float) -> None:
        """The live A/B figures of one arm: its rates with intervals, and its change
        against the baseline (the last arm) with an interval."""
        m, baseline = self.metrics, list(ARMS)[-1]
        for rate in catalogue.LIVE_RATES:
            value = dislike if rate == "dislike" else float(self.rng.uniform(0.05, 0.5))
            m["recoil_sim_arm_rate_ratio"].labels(arm=arm, rate=rate).set(value)
            m["recoil_sim_arm_rate_ci_lower_ratio"].labels(arm=arm, rate=rate).set(value * 0.8)
            m["recoil_sim_arm_rate_ci_upper_ratio"].labels(arm=arm, rate=rate).set(value * 1.2)
            if arm != baseline:
                change = float(self.rng.normal(-0.1, 0.03))
                labels = {"arm": arm, "baseline": baseline, "rate": rate}
                m["recoil_sim_ab_change_ratio"].labels(**labels).set(change)
                m["recoil_sim_ab_change_ci_lower_ratio"].labels(**labels).set(change - 0.1)
                m["recoil_sim_ab_change_ci_upper_ratio"].labels(**labels).set(change + 0.1)
                m["recoil_sim_ab_change_cuped_ratio"].labels(**labels).set(change)
                m["recoil_sim_ab_change_cuped_ci_lower_ratio"].labels(**labels).set(change - 0.07)
                m["recoil_sim_ab_change_cuped_ci_upper_ratio"].labels(**labels).set(change + 0.07)

    def _publish(self, now: float) -> None:
        """A new snapshot version: the learner publishes, serving swaps, the simulator probes."""
        m, rng, v = self.metrics, self.rng, str(self.version)
        if self._has(Part.LEARNER):
            m["recoil_learner_snapshot_version"].set(self.version)
            m["recoil_learner_snapshot_timestamp_seconds"].set(now)
            m["recoil_learner_snapshot_publish_seconds"].observe(float(rng.uniform(0.2, 1.5)))
        if self._has(Part.SERVING):
            m["recoil_serving_snapshot_version"].set(self.version)
        if not self._has(Part.SIMULATOR):
            return
        learned = 1.0 - np.exp(-self.version / 3)  # responsiveness grows as the model trains
        for arm, target in ARMS.items():
            for similarity in catalogue.SIMILARITIES:
                value = target * learned + rng.normal(0, 0.02)
                labels = {"similarity": similarity, "model_version": v, "arm": arm}
                m["recoil_responsiveness_ratio"].labels(**labels).set(value)
                m["recoil_responsiveness_ci_lower_ratio"].labels(**labels).set(value - 0.08)
                m["recoil_responsiveness_ci_upper_ratio"].labels(**labels).set(value + 0.08)
            dislike = 0.02 * (1 + 0.5 * target * learned)  # fewer dislikes when responsive
            m["recoil_sim_dislike_rate_ratio"].labels(arm=arm, model_version=v).set(dislike)
            self._ab(arm, dislike)
            m["recoil_sim_repeat_dislike_creator_rate_ratio"].labels(arm=arm, model_version=v).set(
                dislike * 0.3 * (1 + target * learned)
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True, help="port for /metrics")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--part",
        action="append",
        choices=[p.value for p in Part],
        help="export only this part's metrics (repeatable; default: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tick", type=float, default=0.25, help="seconds between updates")
    parser.add_argument("--snapshot-every", type=float, default=20.0, help="seconds per version")
    args = parser.parse_args(argv)
    parts = tuple(Part(p) for p in args.part) if args.part else tuple(Part)
    registry = CollectorRegistry()
    exporter = SyntheticExporter(
        registry, parts, np.random.default_rng(args.seed), snapshot_every=args.snapshot_every
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    exporter.tick(time.time(), args.tick)  # every series exists before the first scrape
    start_http_server(args.port, addr=args.host, registry=registry)
    print(f"serving /metrics on {args.host}:{args.port}", flush=True)
    while True:
        time.sleep(args.tick)
        exporter.tick(time.time(), args.tick)


if __name__ == "__main__":
    sys.exit(main())
