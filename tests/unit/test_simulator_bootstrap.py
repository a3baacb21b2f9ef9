"""The bootstrap intervals against normal theory on large samples, fixed seeds.

``bootstrap_relative_change`` must resample the *paired* rows (one index per row for
both branches) and return the 2.5/97.5 percentiles. Its interval for
``R = mean(t) / mean(b)`` is then close to the delta-method one,

    sd(R) ~ sqrt(var(t - R b) / n) / mean(b)        (paired rows)
    sd(R) ~ sqrt((var(t) + R^2 var(b)) / n) / mean(b)  (independent branches)

with a 95% width of 2 * 1.96 sd. On rows where t follows b closely the paired width
is ~16 times narrower than the independent one, and the min/max of 2000 resamples
spans ~7 sd instead of 3.92, so either mistake moves the width far outside the
tolerances below.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from simulator.metrics import (
    bootstrap_mean_ci,
    bootstrap_relative_change,
    ndcg_at_k,
    recall_at_k,
    relative_change,
)

Z95 = 1.959964


def _paired_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 1.0, n)
    return base, 0.8 * base + rng.normal(0.0, 0.1, n)  # treated tracks base row by row


def _delta_sd(base: np.ndarray, treated: np.ndarray, paired: bool) -> float:
    n, mean_b = len(base), float(base.mean())
    ratio = float(treated.mean()) / mean_b
    if paired:
        var = np.var(treated - ratio * base, ddof=1)
    else:
        var = np.var(treated, ddof=1) + ratio**2 * np.var(base, ddof=1)
    return math.sqrt(var / n) / mean_b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_interval_has_the_normal_theory_width_and_centre(seed: int) -> None:
    base, treated = _paired_rows(2000, 10)
    paired_sd = _delta_sd(base, treated, paired=True)
    independent_sd = _delta_sd(base, treated, paired=False)
    assert independent_sd > 10 * paired_sd  # the data make the two mistakes distinguishable
    lo, hi = bootstrap_relative_change(base, treated, np.random.default_rng(seed), 2000)
    width = hi - lo
    assert width == pytest.approx(2 * Z95 * paired_sd, rel=0.15)
    point = relative_change(base, treated)
    assert (lo + hi) / 2 == pytest.approx(point, abs=0.1 * width)
    assert lo < point < hi


def test_interval_covers_the_true_change_about_95_percent_of_the_time() -> None:
    # 200 experiments with a known true change of -0.2; the percentile interval
    # should miss about 5% of them (binomial sd ~1.5%), min/max almost never.
    rng = np.random.default_rng(20)
    covered = 0
    trials = 200
    for _ in range(trials):
        base = rng.gamma(2.0, 1.0, 300)
        treated = 0.8 * base * rng.lognormal(0.0, 0.3, 300) / math.exp(0.3**2 / 2)
        lo, hi = bootstrap_relative_change(base, treated, rng, 500)
        covered += lo <= -0.2 <= hi
    assert 0.89 <= covered / trials <= 0.98


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_interval_has_the_normal_theory_width(seed: int) -> None:
    values = np.random.default_rng(3).exponential(1.0, 4000)
    sd = float(values.std(ddof=1)) / math.sqrt(len(values))
    lo, hi = bootstrap_mean_ci(values, np.random.default_rng(seed), 2000)
    assert hi - lo == pytest.approx(2 * Z95 * sd, rel=0.15)
    assert (lo + hi) / 2 == pytest.approx(float(values.mean()), abs=0.1 * (hi - lo))


def test_resamples_are_drawn_from_the_given_generator() -> None:
    base, treated = _paired_rows(200, 11)
    first = bootstrap_relative_change(base, treated, np.random.default_rng(5), 300)
    again = bootstrap_relative_change(base, treated, np.random.default_rng(5), 300)
    other = bootstrap_relative_change(base, treated, np.random.default_rng(6), 300)
    assert first == again and first != other


def test_interval_is_the_2_5_and_97_5_percentiles_of_paired_resamples() -> None:
    # the documented method spelled out: one row index per resample and row for both
    # branches, drawn from the given generator (default 1000 resamples)
    base, treated = _paired_rows(300, 12)
    idx = np.random.default_rng(8).integers(300, size=(1000, 300))
    changes = treated[idx].mean(axis=1) / base[idx].mean(axis=1) - 1.0
    expected = tuple(np.percentile(changes, [2.5, 97.5]))
    assert bootstrap_relative_change(base, treated, np.random.default_rng(8)) == expected
    means = base[idx].mean(axis=1)
    assert bootstrap_mean_ci(base, np.random.default_rng(8)) == tuple(
        np.percentile(means, [2.5, 97.5])
    )


def test_one_row_and_no_rows() -> None:
    rng = np.random.default_rng(0)
    assert bootstrap_relative_change(np.array([2.0]), np.array([1.0]), rng, 50) == (-0.5, -0.5)
    assert bootstrap_mean_ci(np.array([3.0]), rng, 50) == (3.0, 3.0)
    empty = np.array([], dtype=float)
    assert all(math.isnan(x) for x in bootstrap_relative_change(empty, empty, rng))
    assert all(math.isnan(x) for x in bootstrap_mean_ci(empty, rng))


def test_resamples_with_a_zero_base_are_dropped_quietly() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's divide/invalid warnings would raise here
        # 1/0 (divide) and 0/0 (invalid) resamples happen with 3 rows; they are left out
        base, treated = np.array([0.0, 0.0, 2.0]), np.array([1.0, 0.0, 1.0])
        lo, hi = bootstrap_relative_change(base, treated, np.random.default_rng(1), 400)
        assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi
        # every resample of an all-zero base is undefined: no interval at all
        zeros = np.zeros(4)
        result = bootstrap_relative_change(zeros, np.ones(4), np.random.default_rng(1), 50)
        assert all(math.isnan(x) for x in result)


def test_messages() -> None:
    with pytest.raises(ValueError, match=r"^base and treated must be paired 1-d arrays of equal"):
        bootstrap_relative_change(np.ones((2, 2)), np.ones((2, 2)), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^recall is undefined without relevant items$"):
        recall_at_k(["a"], set(), 1)
    with pytest.raises(ValueError, match=r"^NDCG is undefined without relevant items$"):
        ndcg_at_k(["a"], [], 1)
