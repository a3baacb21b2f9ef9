"""The offline replay of the responsiveness-regression alert. The pooled rule is quiet on
noise and fires on a regression; the previous per-version rule fires on noise when versions
come slower than its 2 minutes' `for`, and never fires when they come faster."""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np
import pytest

from monitoring.regression_replay import noise_and_cadence, replay, synthetic_rates, version_noise


def _probes(
    values: list[float], arm: str = "feature_and_labels", every: float = 30.0
) -> list[dict[str, Any]]:
    return [
        {"arm": arm, "model_version": i + 1, "cluster": v, "creator": v,
         "ci95_cluster": [v - 0.05, v + 0.05], "ci95_creator": [v - 0.05, v + 0.05],
         "probed_at": 1000.0 + every * i}
        for i, v in enumerate(values)
    ]  # fmt: skip


def test_noise_leaves_the_pooled_rule_quiet() -> None:
    rng = np.random.default_rng(1)
    noise = list(-0.25 + rng.uniform(-0.14, 0.14, 40))  # 20 minutes, a version each 30 s
    assert replay(_probes(noise)) == []


def test_the_per_version_rule_fires_on_noise_when_versions_come_slowly() -> None:
    rng = np.random.default_rng(1)
    noise = list(-0.25 + rng.uniform(-0.14, 0.14, 40))  # a version each 3 minutes
    assert {f.rule for f in replay(_probes(noise, every=180.0))} >= {"per_version"}


def test_a_regression_fires_the_pooled_rule_within_minutes() -> None:
    rng = np.random.default_rng(2)
    values = list(-0.25 + rng.uniform(-0.1, 0.1, 20)) + list(rng.uniform(-0.1, 0.1, 20))
    pooled = [f for f in replay(_probes(values)) if f.rule == "pooled"]
    assert {(f.arm, f.similarity) for f in pooled} == {
        ("feature_and_labels", "cluster"),
        ("feature_and_labels", "creator"),
    }
    switch = 20 * 30.0  # seconds after the first probe
    assert all(switch < f.start <= switch + 240 for f in pooled)
    # Each version is the newest for 30 s only: the per-version rule's 2 minutes never pass.
    assert not [f for f in replay(_probes(values)) if f.rule == "per_version"]


def test_version_noise_is_the_mean_step_between_versions() -> None:
    noise = version_noise(_probes([-0.2, -0.3, -0.1]))
    assert noise[("feature_and_labels", "cluster")] == pytest.approx(0.15)


def test_synthetic_rates_count_false_alarms_and_detections() -> None:
    quiet = synthetic_rates(sd=0.01, cadence=30.0, hours=2.0, shift=0.3, runs=4)
    assert quiet["pooled_false_per_hour"] == quiet["per_version_false_per_hour"] == 0.0
    assert quiet["pooled_detected"] == 1.0  # every run's step is caught...
    assert 120.0 <= quiet["pooled_median_delay_s"] <= 240.0  # ...after the `for` of 2m
    assert quiet["per_version_detected"] == 0.0  # each version is newest for 30 s only
    noisy = synthetic_rates(sd=0.3, cadence=30.0, hours=2.0, shift=0.3, runs=4)
    assert noisy["pooled_false_per_hour"] > 0.0


def test_noise_and_cadence_of_a_recorded_run() -> None:
    sd, cadence = noise_and_cadence(
        _probes([0.0, 0.0, 0.0, -0.2, -0.3, -0.1, -0.2]), "feature_and_labels", "cluster"
    )
    assert cadence == 30.0
    assert sd == pytest.approx(statistics.stdev([-0.1, 0.2, -0.1]) / math.sqrt(2))


def test_a_switch_half_way_through_a_ten_minute_run_fires_inside_it() -> None:
    """The demo's check: versions every 30 s from the first probe, responsive (about -0.22)
    until a switch to no_signal's model (0) 240 s in; the run ends 540 s after its first
    probe. The pooled rule fires after the switch and before the end, on both similarities;
    a baseline that pooled the recent window too did not (docs/live_experiment.md)."""
    rng = np.random.default_rng(3)
    before = list(-0.22 + rng.normal(0.0, 0.05, 8))
    after = list(rng.normal(0.0, 0.02, 10))
    probes = _probes(before + after)
    pooled = [f for f in replay(probes) if f.rule == "pooled"]
    assert {f.similarity for f in pooled} == {"cluster", "creator"}
    assert all(240.0 + 120.0 <= f.start < 540.0 for f in pooled)  # the `for` of 2m holds
    # Before the switch there is nothing to fire on, even while the baseline is empty.
    assert replay(_probes(before)) == []


def test_times_count_from_the_given_start() -> None:
    """A demo's --warmup: Prometheus evaluates from the measured run's start, before the
    first probe kept after it; firing times are then the demo's printed times."""
    rng = np.random.default_rng(3)
    probes = _probes(list(-0.22 + rng.normal(0.0, 0.05, 8)) + list(rng.normal(0.0, 0.02, 10)))
    shifted = replay(probes, start=1000.0 - 45.0)  # the first probe 45 s into the run
    assert [f.start - 45.0 for f in shifted] == [f.start for f in replay(probes)]
