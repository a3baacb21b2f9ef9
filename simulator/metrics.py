"""Ranking metrics and bootstrap intervals, as pure functions.

- ``recall_at_k``: share of a user's relevant items found in the top K.
- ``ndcg_at_k``: binary-relevance NDCG, ideal DCG over ``min(K, |relevant|)`` items.
- ``hit_at_k`` / ``ndcg_single``: one target item per test case (next-item
  evaluation); NDCG is ``1 / log2(rank + 2)`` for a hit at 0-based ``rank``.
- ``relative_change``: ``mean(b) / mean(a) - 1``, with a bootstrap interval
  that resamples the paired rows (simulations or users).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np


def recall_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    if not relevant:
        raise ValueError("recall is undefined without relevant items")
    return len(set(recommended[:k]) & set(relevant)) / len(relevant)


def ndcg_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    if not relevant:
        raise ValueError("NDCG is undefined without relevant items")
    relevant = set(relevant)
    dcg = sum(1.0 / math.log2(r + 2) for r, item in enumerate(recommended[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(relevant))))
    return dcg / ideal


def hit_at_k(recommended: Sequence[str], target: str, k: int) -> float:
    return 1.0 if target in recommended[:k] else 0.0


def ndcg_single(recommended: Sequence[str], target: str, k: int) -> float:
    top = list(recommended[:k])
    return 1.0 / math.log2(top.index(target) + 2) if target in top else 0.0


def relative_change(base: np.ndarray, treated: np.ndarray) -> float:
    """``mean(treated) / mean(base) - 1``; NaN when the base mean is 0."""
    denominator = float(np.mean(base))
    if denominator == 0.0:
        return math.nan
    return float(np.mean(treated)) / denominator - 1.0


def bootstrap_relative_change(
    base: np.ndarray, treated: np.ndarray, rng: np.random.Generator, resamples: int = 1000
) -> tuple[float, float]:
    """95% percentile interval of ``relative_change`` over paired resamples of the rows."""
    if base.shape != treated.shape or base.ndim != 1:
        raise ValueError("base and treated must be paired 1-d arrays of equal length")
    n = len(base)
    if n == 0:
        return (math.nan, math.nan)
    idx = rng.integers(n, size=(resamples, n))  # (R, n)
    base_means = base[idx].mean(axis=1)  # (R,)
    treated_means = treated[idx].mean(axis=1)  # (R,)
    with np.errstate(divide="ignore", invalid="ignore"):
        return percentile_interval(treated_means / base_means - 1.0)


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the finite values (a bootstrap's 95% interval);
    NaN, NaN when none is finite (e.g. every resample divided by zero)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return (float(lo), float(hi))


def bootstrap_mean_ci(
    values: np.ndarray, rng: np.random.Generator, resamples: int = 1000
) -> tuple[float, float]:
    """95% percentile interval of the mean."""
    if len(values) == 0:
        return (math.nan, math.nan)
    means = values[rng.integers(len(values), size=(resamples, len(values)))].mean(axis=1)
    return percentile_interval(means)
