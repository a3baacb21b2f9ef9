"""The responsiveness-regression alert, replayed offline over recorded probe results.

``python -m monitoring.regression_replay probes.jsonl [...]`` reads the probe
results a loop wrote (``recoil demo``'s ``<workdir>/probes.jsonl``: one line per
arm and model version, with the time it was probed) and evaluates, every
``step`` seconds as Prometheus would, two rules:

- ``per_version``: the previous rule: the newest version is more than the
  threshold less responsive than the version before it, and its own 95%
  interval lies above that version's value; held for 2 minutes while it stays
  the newest version (a new version resets the pending state, as its
  ``model_version`` label changes the alert's series);
- ``pooled``: the rule of :mod:`monitoring.rules`: the newest version's value,
  averaged over the last ``regression_recent``, minus its average over the
  ``regression_baseline`` before that, above the threshold for ``for``.

It counts firing episodes per arm and similarity. A run where nothing regressed
measures false alarms; a run with ``recoil demo --switch ARM=no_signal@T``
measures whether and when the alert fires after the switch. The replay mirrors
the PromQL to within one evaluation step; promtool tests the PromQL itself
(monitoring/rules/tests/responsiveness_test.yml).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.rules import Thresholds, _seconds

SIMILARITIES = ("cluster", "creator")


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


def replay(
    probes: Sequence[dict[str, Any]],
    thresholds: Thresholds | None = None,
    step: float = 15.0,
    per_version_for: float = 120.0,
) -> list[Firing]:
    """Every firing episode of both rules over the run (times from the run's first probe)."""
    thresholds = thresholds or Thresholds()
    if not probes:
        return []
    t0 = min(float(p["probed_at"]) for p in probes)
    end = max(float(p["probed_at"]) for p in probes) + step
    times = [t0 + i * step for i in range(int((end - t0) / step) + 1)]
    recent, baseline = (
        _seconds(thresholds.regression_recent),
        _seconds(thresholds.regression_baseline),
    )
    threshold = thresholds.responsiveness_regression
    hold = _seconds(_for_of_regression_alert())
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
                    on = float(new[similarity]) - float(old[similarity]) > threshold and float(
                        new[f"ci95_{similarity}"][0]
                    ) > float(old[similarity])
                if not on or i != pv_version:
                    pv_since = t if on else None
                pv_version = i
                pv_fire.append(on and pv_since is not None and t - pv_since >= per_version_for)
            out += _episodes("per_version", arm, similarity, [t - t0 for t in times], pv_fire, 0)
            pooled: list[bool] = []
            for t in times:
                rec = [v for u, v in zip(times, value, strict=True) if t - recent < u <= t]
                base = [
                    v
                    for u, v in zip(times, value, strict=True)
                    if t - recent - baseline < u <= t - recent
                ]
                rec = [v for v in rec if math.isfinite(v)]
                base = [v for v in base if math.isfinite(v)]
                pooled.append(
                    bool(rec and base) and sum(rec) / len(rec) - sum(base) / len(base) > threshold
                )
            out += _episodes("pooled", arm, similarity, [t - t0 for t in times], pooled, hold)
    return out


def _for_of_regression_alert() -> str:
    from monitoring.rules import all_alerts

    return next(a.for_ for a in all_alerts() if a.alert == "RecoilResponsivenessRegressed")


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


def read_probes(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probes", type=Path, nargs="+", help="probes.jsonl of recorded runs")
    parser.add_argument("--step", type=float, default=15.0, help="evaluation interval (s)")
    args = parser.parse_args(argv)
    for path in args.probes:
        probes = read_probes(path)
        t0 = min(float(p["probed_at"]) for p in probes)
        span = max(float(p["probed_at"]) for p in probes) - t0
        print(f"{path}: {len(probes)} probed versions over {span / 60:.1f} min")
        for (arm, similarity), noise in version_noise(probes).items():
            count = sum(1 for p in probes if p["arm"] == arm)
            print(f"  {arm} {similarity}: {count} versions, mean |change| between "
                  f"consecutive versions {noise:.3f}")  # fmt: skip
        firings = replay(probes, step=args.step)
        for rule in ("per_version", "pooled"):
            found = [f for f in firings if f.rule == rule]
            print(f"  {rule}: {len(found)} firing episodes")
            for f in found:
                print(f"    {f.arm} {f.similarity}: {f.start:.0f}s .. {f.end:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
