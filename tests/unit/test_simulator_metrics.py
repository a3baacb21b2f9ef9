"""Ranking metrics and bootstrap intervals on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator import metrics


def test_recall_and_ndcg_exact() -> None:
    recs = ["a", "b", "c", "d"]
    assert metrics.recall_at_k(recs, {"b", "d", "z"}, 2) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(recs, {"b", "d", "z"}, 4) == pytest.approx(2 / 3)
    # hits at ranks 1 and 3 (0-based); ideal: two hits at ranks 0 and 1 (k=4, |rel|=3 -> 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics.ndcg_at_k(recs, {"b", "d", "z"}, 4) == pytest.approx(dcg / ideal)
    assert metrics.ndcg_at_k(recs, {"a"}, 4) == 1.0
    with pytest.raises(ValueError, match="relevant"):
        metrics.recall_at_k(recs, set(), 3)


def test_single_target_metrics() -> None:
    recs = ["a", "b", "c"]
    assert metrics.hit_at_k(recs, "c", 3) == 1.0 and metrics.hit_at_k(recs, "c", 2) == 0.0
    assert metrics.ndcg_single(recs, "b", 3) == pytest.approx(1 / math.log2(3))
    assert metrics.ndcg_single(recs, "x", 3) == 0.0


def test_relative_change_and_its_interval() -> None:
    base = np.array([0.5, 0.5, 0.5, 0.5])
    treated = np.array([0.1, 0.1, 0.1, 0.1])
    assert metrics.relative_change(base, treated) == pytest.approx(-0.8)
    lo, hi = metrics.bootstrap_relative_change(base, treated, np.random.default_rng(0), 50)
    assert (lo, hi) == pytest.approx((-0.8, -0.8))
    assert math.isnan(metrics.relative_change(np.zeros(3), np.ones(3)))
    rng = np.random.default_rng(1)
    noisy_base = rng.random(500)
    noisy = noisy_base * 0.5 + 0.05 * rng.random(500)
    lo, hi = metrics.bootstrap_relative_change(noisy_base, noisy, np.random.default_rng(2), 500)
    assert lo < metrics.relative_change(noisy_base, noisy) < hi
    with pytest.raises(ValueError, match="paired"):
        metrics.bootstrap_relative_change(np.ones(3), np.ones(4), rng)


def test_bootstrap_mean_interval_brackets_the_mean() -> None:
    values = np.random.default_rng(3).random(400)
    lo, hi = metrics.bootstrap_mean_ci(values, np.random.default_rng(4), 500)
    assert lo < values.mean() < hi and hi - lo < 0.1
