"""The offline replay of the responsiveness-regression alert. The pooled rule is quiet on
noise and fires on a regression; the previous per-version rule fires on noise when versions
come slower than its 2 minutes' `for`, and never fires when they come faster."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from monitoring.regression_replay import replay, version_noise


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
