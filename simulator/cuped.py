"""CUPED for the live A/B rates: a covariate both arms share narrows the change's interval.

A live rate varies mostly with the user: some users dislike far more than others, and
with a few dozen users an arm, which users the hash put where decides much of an A/B
change (docs/live_experiment.md). CUPED (Deng, Xu, Kohavi and Walker, WSDM 2013)
subtracts the part of each arm's rate that a covariate predicts. The covariate here is
the same rate on the impressions the *logging policy* chose for the arm's users: every
arm's users get those from the same policy, so it measures the users, not the arm.

The rates are ratios of sums over users (dislikes / impressions), so the regression
runs on the delta method's per-user linearisations (Deng, Knoblich and Lu, KDD 2018).
For an arm with users u = 1..n, outcome counts Y_u over N_u served impressions and
covariate counts X_u over M_u policy impressions::

    R = ΣY / ΣN,   Q = ΣX / ΣM
    L_u = (Y_u - R N_u) / mean(N),   K_u = (X_u - Q M_u) / mean(M)
    var(R) ≈ var(L) / n,   var(Q) ≈ var(K) / n,   cov(R, Q) ≈ cov(L, K) / n

and each arm's rate is adjusted towards the covariate rate of all users, Q*:

    R_adj = R - θ (Q - Q*),   θ = Σ_arms cov(R, Q) / Σ_arms var(Q)

(the θ that minimises the variance of the difference of the two arms). The change is
``R_adj(arm) / R_adj(baseline) - 1``; its interval resamples users within each arm and
recomputes R, Q, Q* and θ every time. Without covariate impressions θ is 0 and the
adjusted change is the plain one.

The covariate is measured during the experiment, so an arm that changes how its users
respond to the policy's items moves it too, and the adjustment would then take part of
the arm's effect away. ``covariate_change`` (the covariate's own A/B change, which
should hold 0 in its interval) is reported beside it to check that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.metrics import percentile_interval


@dataclass(frozen=True)
class RateCounts:
    """One arm's per-user counts, each (U,): the outcome over the served impressions and
    the covariate (the same outcome) over the policy's impressions."""

    outcome: np.ndarray
    served: np.ndarray
    covariate: np.ndarray
    policy: np.ndarray


@dataclass(frozen=True)
class CupedChange:
    """The adjusted A/B change with its 95% interval, θ, and the covariate's own change."""

    change: float
    ci95: tuple[float, float]
    theta: float
    covariate_change: float
    covariate_ci95: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "change": self.change, "ci95": list(self.ci95), "theta": self.theta,
            "covariate_change": self.covariate_change,
            "covariate_ci95": list(self.covariate_ci95),
        }  # fmt: skip


def _moments(y: np.ndarray, n: np.ndarray, x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, ...]:
    """Over the last axis (users): R, Q, cov(R, Q), var(Q), ΣX and ΣM; leading axes are
    bootstrap draws. NaN where a sum is 0."""
    users = y.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        served, policy = n.sum(-1), m.sum(-1)
        r, q = y.sum(-1) / served, x.sum(-1) / policy
        lin_r = (y - r[..., None] * n) / (served / users)[..., None]
        lin_q = (x - q[..., None] * m) / (policy / users)[..., None]
        # the linearisations sum to 0 over the users, so their means are 0
        scale = users * max(users - 1, 1)
        cov = (lin_r * lin_q).sum(-1) / scale
        var = (lin_q * lin_q).sum(-1) / scale
    return r, q, cov, var, x.sum(-1), policy


def _adjusted(
    treated: tuple[np.ndarray, ...], control: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(adjusted change, θ, covariate change) from both arms' ``_moments``."""
    r1, q1, cov1, var1, x1, m1 = treated
    r0, q0, cov0, var0, x0, m0 = control
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.nan_to_num(var1) + np.nan_to_num(var0)
        theta = np.where(var > 0, (np.nan_to_num(cov1) + np.nan_to_num(cov0)) / var, 0.0)
        pooled = (x1 + x0) / (m1 + m0)
        # an arm without policy impressions has no covariate rate: leave its rate alone
        adj1 = r1 - np.where(np.isfinite(q1), theta * (q1 - pooled), 0.0)
        adj0 = r0 - np.where(np.isfinite(q0), theta * (q0 - pooled), 0.0)
        return adj1 / adj0 - 1.0, theta, q1 / q0 - 1.0


def cuped_change(
    treated: RateCounts, control: RateCounts, rng: np.random.Generator, resamples: int = 1000
) -> CupedChange:
    """``R_adj(treated) / R_adj(control) - 1`` with a 95% interval (users resampled
    within each arm), θ, and the covariate's own change (see the module docstring)."""

    def moments(c: RateCounts, idx: np.ndarray | None) -> tuple[np.ndarray, ...]:
        arrays = [np.asarray(a, dtype=float) for a in (c.outcome, c.served, c.covariate, c.policy)]
        if idx is not None:
            arrays = [a[idx] for a in arrays]
        return _moments(*arrays)

    if len(treated.served) == 0 or len(control.served) == 0:
        nan = (math.nan, math.nan)
        return CupedChange(math.nan, nan, math.nan, math.nan, nan)
    change, theta, cov_change = _adjusted(moments(treated, None), moments(control, None))
    draws_t = rng.integers(len(treated.served), size=(resamples, len(treated.served)))
    draws_c = rng.integers(len(control.served), size=(resamples, len(control.served)))
    changes, _, cov_changes = _adjusted(moments(treated, draws_t), moments(control, draws_c))
    return CupedChange(
        change=float(change),
        ci95=percentile_interval(changes),
        theta=float(theta),
        covariate_change=float(cov_change),
        covariate_ci95=percentile_interval(cov_changes),
    )
