"""The responsiveness-regression alert, replayed offline over recorded probe results.

``python -m monitoring.regression_replay probes.jsonl [...]`` reads the probe
results a loop wrote (``recoil demo``'s ``<workdir>/probes.jsonl``: one line per
arm and model version, with the time it was probed) and evaluates, every
``step`` seconds as Prometheus would, two rules:

- ``per_version``: the previous rule: the newest version is more than its
  threshold (0.1) less responsive than the version before it, and its own 95%
  interval lies above that version's value; held for 2 minutes while it stays
  the newest version (a new version resets the pending state, as its
  ``model_version`` label changes the alert's series);
- ``pooled``: the rule of :mod:`monitoring.rules`: the newest version's value,
  averaged over the last ``regression_recent``, minus its average over the
  ``regression_baseline`` before that (0 while that window is still empty),
  above the threshold for ``for``.

It counts firing episodes per arm and similarity. A run where nothing regressed
measures false alarms; a run with ``recoil demo --switch ARM=no_signal@T``
measures whether and when the alert fires after the switch. One 10-minute run
holds few versions, so ``--synthetic-hours`` also replays many hours of series
drawn with the recorded run's own noise and cadence (normal, around a constant:
``synthetic_rates``), without and with a step of ``--shift`` half way. The replay mirrors
the PromQL to within one evaluation step; promtool tests the PromQL itself
(monitoring/rules/tests/responsiveness_test.yml).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitoring.catalogue import SIMILARITIES
from monitoring.rules import Thresholds, _seconds


@dataclass(frozen=True)
class Firing:
    """One firing episode of an alert for one arm and similarity."""

    rule: str
    arm: str
    similarity: str
    start: float  # seconds since the first probe of the run
    end: float


def _versions(probes: Sequence[dict[str, Any]], arm: str) -> list[dict[str, Any]]:
    return sorted((p for p in probes if p["arm"] == arm), key=lambda p: float(p["probed_at"]))


def _newest_at(versions: Sequence[dict[str, Any]], t: float) -> int:
    """Index of the newest version probed at or before ``t``; -1 before the first."""
    index = -1
    for i, p in enumerate(versions):
        if float(p["probed_at"]) <= t:
            index = i
    return index


def _episodes(
    rule: str, arm: str, similarity: str, times: list[float], active: list[bool], hold: float
) -> list[Firing]:
    """Firing episodes of a condition that must hold ``hold`` seconds (the rule's ``for``)."""
    out: list[Firing] = []
    since: float | None = None
    firing_from: float | None = None
    for t, on in zip(times, active, strict=True):
        if on:
            since = t if since is None else since
            if firing_from is None and t - since >= hold:
                firing_from = t
        else:
            if firing_from is not None:
                out.append(Firing(rule, arm, similarity, firing_from, t))
            since = firing_from = None
    if firing_from is not None:
        out.append(Firing(rule, arm, similarity, firing_from, times[-1]))
    return out


class _WindowMean:
    """avg_over_time over (lo, hi] of a sampled series, NaNs left out (prefix sums)."""

    def __init__(self, times: Sequence[float], values: Sequence[float]) -> None:
        array = np.asarray(values, dtype=float)
        finite = np.isfinite(array)
        self.times = np.asarray(times, dtype=float)
        self.sums = np.concatenate([[0.0], np.cumsum(np.where(finite, array, 0.0))])
        self.counts = np.concatenate([[0], np.cumsum(finite)])

    def __call__(self, lo: float, hi: float) -> float:
        i, j = np.searchsorted(self.times, [lo, hi], side="right")
        n = self.counts[j] - self.counts[i]
        return float((self.sums[j] - self.sums[i]) / n) if n else math.nan


def _pooled_difference(mean: _WindowMean, t: float, recent: float, baseline: float) -> float:
    """``:avg_recent - :avg_baseline`` at ``t``: the recent window's mean minus the mean of
    the baseline window before it, or 0 while that window holds no sample yet (the rule's
    baseline then falls back to the recent mean)."""
    now = mean(t - recent, t)
    before = mean(t - recent - baseline, t - recent)
    return now - (now if math.isnan(before) else before)


def replay(
    probes: Sequence[dict[str, Any]],
    thresholds: Thresholds | None = None,
    step: float = 15.0,
    per_version_for: float = 120.0,  # the previous rule's `for` and threshold
    per_version_threshold: float = 0.1,
    start: float | None = None,
) -> list[Firing]:
    """Every firing episode of both rules over the run; times from ``start`` (a Unix time at
    or before the first probe: when Prometheus began to evaluate), else the first probe."""
    thresholds = thresholds or Thresholds()
    if not probes:
        return []
    first = min(float(p["probed_at"]) for p in probes)
    t0 = first if start is None else min(start, first)
    end = max(float(p["probed_at"]) for p in probes) + step
    times = [t0 + i * step for i in range(int((end - t0) / step) + 1)]
    recent, baseline = (
        _seconds(thresholds.regression_recent),
        _seconds(thresholds.regression_baseline),
    )
    threshold = thresholds.responsiveness_regression
    hold = _seconds(thresholds.regression_for)
    out: list[Firing] = []
    for arm in sorted({p["arm"] for p in probes}):
        versions = _versions(probes, arm)
        newest = [_newest_at(versions, t) for t in times]
        for similarity in SIMILARITIES:
            value = [
                float(versions[i][similarity]) if i >= 0 else math.nan for i in newest
            ]  # the :newest series; NaN before the first version
            # per_version: a new version resets the pending time, so key by version.
            pv_since: float | None = None
            pv_version = -1
            pv_fire: list[bool] = []
            for t, i in zip(times, newest, strict=True):
                on = False
                if i >= 1:
                    new, old = versions[i], versions[i - 1]
                    on = float(new[similarity]) - float(
                        old[similarity]
                    ) > per_version_threshold and float(new[f"ci95_{similarity}"][0]) > float(
                        old[similarity]
                    )
                if not on or i != pv_version:
                    pv_since = t if on else None
                pv_version = i
                pv_fire.append(on and pv_since is not None and t - pv_since >= per_version_for)
            out += _episodes("per_version", arm, similarity, [t - t0 for t in times], pv_fire, 0)
            mean = _WindowMean(times, value)
            pooled = [_pooled_difference(mean, t, recent, baseline) > threshold for t in times]
            out += _episodes("pooled", arm, similarity, [t - t0 for t in times], pooled, hold)
    return out


def version_noise(probes: Sequence[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """Mean absolute change between consecutive versions, per (arm, similarity)."""
    out = {}
    for arm in sorted({p["arm"] for p in probes}):
        versions = _versions(probes, arm)
        for similarity in SIMILARITIES:
            values = [float(p[similarity]) for p in versions if math.isfinite(p[similarity])]
            steps = [abs(b - a) for a, b in itertools.pairwise(values)]
            out[(arm, similarity)] = sum(steps) / len(steps) if steps else math.nan
    return out


def noise_and_cadence(
    probes: Sequence[dict[str, Any]], arm: str, similarity: str, skip: int = 3
) -> tuple[float, float]:
    """A version's measurement noise (SD of consecutive differences / sqrt 2, which slow
    learning hardly moves) and the median seconds between versions, after ``skip``
    warm-up versions."""
    versions = _versions(probes, arm)[skip:]
    values = [float(p[similarity]) for p in versions if math.isfinite(p[similarity])]
    steps = [b - a for a, b in itertools.pairwise(values)]
    gaps = sorted(float(b["probed_at"]) - float(a["probed_at"])
                  for a, b in itertools.pairwise(versions))  # fmt: skip
    if len(steps) < 2 or not gaps:
        return math.nan, math.nan
    return statistics.stdev(steps) / math.sqrt(2), gaps[len(gaps) // 2]


def synthetic_rates(
    sd: float,
    cadence: float,
    hours: float,
    shift: float,
    seed: int = 0,
    runs: int = 20,
    thresholds: Thresholds | None = None,
) -> dict[str, float]:
    """Firing episodes per hour of each rule on noise alone, and the share of ``runs``
    runs (each ``hours / runs`` long) in which each rule fired after a step of ``shift``
    half way, with the median delay of the pooled rule's first firing after the step."""
    rng = np.random.default_rng(seed)
    per_run = hours * 3600 / runs
    n = max(4, int(per_run / cadence))
    quiet = {"per_version": 0, "pooled": 0}
    caught = {"per_version": 0, "pooled": 0}
    delays: list[float] = []
    for _ in range(runs):
        values = rng.normal(-0.3, sd, n)
        for f in replay(_synthetic(values, cadence), thresholds):
            quiet[f.rule] += f.similarity == "cluster"  # the two similarities are copies
        stepped = values + np.where(np.arange(n) >= n // 2, shift, 0.0)
        at = (n // 2) * cadence
        after = [
            f
            for f in replay(_synthetic(stepped, cadence), thresholds)
            if f.end > at and f.similarity == "cluster"
        ]
        for rule in caught:
            caught[rule] += any(f.rule == rule for f in after)
        pooled = [f.start - at for f in after if f.rule == "pooled" and f.start >= at]
        if pooled:
            delays.append(min(pooled))
    span_hours = runs * n * cadence / 3600
    return {
        "per_version_false_per_hour": quiet["per_version"] / span_hours,
        "pooled_false_per_hour": quiet["pooled"] / span_hours,
        "per_version_detected": caught["per_version"] / runs,
        "pooled_detected": caught["pooled"] / runs,
        "pooled_median_delay_s": statistics.median(delays) if delays else math.nan,
    }


def _synthetic(values: np.ndarray, cadence: float) -> list[dict[str, Any]]:
    return [
        {"arm": "synthetic", "model_version": i + 1, "cluster": float(v), "creator": float(v),
         "ci95_cluster": [float(v) - 1.96 * 0.05, float(v) + 1.96 * 0.05],
         "ci95_creator": [float(v) - 1.96 * 0.05, float(v) + 1.96 * 0.05],
         "probed_at": cadence * i}
        for i, v in enumerate(values)
    ]  # fmt: skip


def read_probes(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probes", type=Path, nargs="+", help="probes.jsonl of recorded runs")
    parser.add_argument("--step", type=float, default=15.0, help="evaluation interval (s)")
    parser.add_argument(
        "--synthetic-hours", type=float, default=0.0, help="also replay this many hours of "
        "series with each arm's recorded noise and cadence (0 = no)",
    )  # fmt: skip
    parser.add_argument("--shift", type=float, default=0.25, help="the synthetic regression's step")
    parser.add_argument(
        "--since", type=float, default=0.0, help="ignore probes before this Unix time (a demo's "
        "--warmup: its measured_from in warmup.json); times then count from it",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for path in args.probes:
        probes = [p for p in read_probes(path) if float(p["probed_at"]) >= args.since]
        if not probes:
            print(f"{path}: no probes since {args.since}")
            continue
        t0 = min(float(p["probed_at"]) for p in probes)
        span = max(float(p["probed_at"]) for p in probes) - t0
        print(f"{path}: {len(probes)} probed versions over {span / 60:.1f} min")
        for (arm, similarity), noise in version_noise(probes).items():
            count = sum(1 for p in probes if p["arm"] == arm)
            print(f"  {arm} {similarity}: {count} versions, mean |change| between "
                  f"consecutive versions {noise:.3f}")  # fmt: skip
        firings = replay(probes, step=args.step, start=args.since or None)
        for rule in ("per_version", "pooled"):
            found = [f for f in firings if f.rule == rule]
            print(f"  {rule}: {len(found)} firing episodes")
            for f in found:
                print(f"    {f.arm} {f.similarity}: {f.start:.0f}s .. {f.end:.0f}s")
        if args.synthetic_hours <= 0:
            continue
        for arm in sorted({p["arm"] for p in probes}):
            for similarity in SIMILARITIES:
                sd, cadence = noise_and_cadence(probes, arm, similarity)
                if not (math.isfinite(sd) and sd > 0):
                    continue
                rates = synthetic_rates(sd, cadence, args.synthetic_hours, args.shift)
                print(f"  synthetic {arm} {similarity} (noise sd {sd:.3f}, a version every "
                      f"{cadence:.0f}s, {args.synthetic_hours:g} h): "
                      + ", ".join(f"{k} {v:.3g}" for k, v in rates.items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
