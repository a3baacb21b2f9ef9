"""A/B assignment of live users to arms, and the per-arm live metrics with intervals.

Each user is assigned to one arm by a stable hash of its user id (``assign_arm``):
the same user id and salt always land in the same arm, on any machine and in any
process, and the shares hold over many users. Every arm's model serves only its
own users, so the live metrics of one arm are measured on its users alone:

- ``dislike``: dislikes / impressions served by the arm's model,
- ``repeat_dislike``: dislikes of a creator the same user disliked within the
  last ``repeat_window`` of their impressions / impressions,
- ``engagement``: positives (like or long dwell) / impressions.

A user's impressions are correlated, so intervals resample *users*, not
impressions (``ArmTally.rate_ci``); the A/B change ``rate(arm) / rate(baseline) - 1``
resamples each arm's users independently (``relative_change_ci``). Each user's same
rates on the impressions the logging policy chose for them (the same policy in every
arm) are counted too, as the covariate of a CUPED-adjusted change (``simulator.cuped``)
whose interval is narrower where users differ much in how often they dislike.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitoring.catalogue import LIVE_RATES as RATES  # the live metrics, in display order
from simulator.cuped import CupedChange, RateCounts, cuped_change
from simulator.metrics import percentile_interval

# A repeated dislike: the same creator disliked again within this many impressions (the
# paper's live metric). The simulator's and the demo's flag share the default and help.
REPEAT_WINDOW = 50
REPEAT_WINDOW_HELP = "a repeated dislike: the same creator disliked within this many impressions"


def parse_split(spec: str, arms: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """``"a=0.5,b=0.5"`` (or ``""`` for equal shares of ``arms``) as normalised shares."""
    if not spec.strip():
        return tuple((arm, 1.0 / len(arms)) for arm in arms)
    shares: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.strip().partition("=")
        try:
            share = float(value)
        except ValueError:
            share = math.nan
        if not sep or not name or not math.isfinite(share) or share < 0:
            raise ValueError(f"split {part!r}: expected ARM=SHARE with a share >= 0")
        shares[name] = share
    unknown = sorted(set(shares) - set(arms))
    if unknown:
        raise ValueError(f"split names arms that do not run: {unknown} (arms: {list(arms)})")
    total = sum(shares.values())
    if total <= 0:
        raise ValueError("split: the shares add up to 0")
    return tuple((arm, shares.get(arm, 0.0) / total) for arm in arms)


def user_bucket(user_id: str, salt: str = "") -> float:
    """A stable uniform number in [0, 1) from the user id (SHA-256, not Python's hash)."""
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_arm(user_id: str, split: Sequence[tuple[str, float]], salt: str = "") -> str:
    """The arm whose share interval holds the user's bucket (shares must add up to 1)."""
    if not split:
        raise ValueError("assign_arm: no arms to assign to")
    bucket = user_bucket(user_id, salt)
    edge = 0.0
    for arm, share in split:
        edge += share
        if bucket < edge:
            return arm
    return next(arm for arm, share in reversed(split) if share > 0)  # rounding at the top


@dataclass
class Outcomes:
    """Impressions and what the user did with them."""

    impressions: int = 0
    dislikes: int = 0
    repeat_dislikes: int = 0
    positives: int = 0

    def add(self, disliked: bool, repeat: bool, positive: bool) -> None:
        self.impressions += 1
        self.dislikes += disliked
        self.repeat_dislikes += repeat
        self.positives += positive


@dataclass
class UserCounts:
    """One user's impressions under one arm: those the arm's model served, and those the
    logging policy chose (the CUPED covariate)."""

    served: Outcomes = field(default_factory=Outcomes)
    policy: Outcomes = field(default_factory=Outcomes)


_OUTCOME = {"dislike": "dislikes", "repeat_dislike": "repeat_dislikes", "engagement": "positives"}


@dataclass
class ArmTally:
    """Per-user counts of one arm: the rates and their user-resampled intervals."""

    users: dict[str, UserCounts] = field(default_factory=dict)

    def record(
        self, user_id: str, disliked: bool, repeat: bool, positive: bool, by_policy: bool = False
    ) -> None:
        """An impression the arm's model served, or (``by_policy``) one the logging policy
        chose for one of the arm's users."""
        counts = self.users.setdefault(user_id, UserCounts())
        (counts.policy if by_policy else counts.served).add(disliked, repeat, positive)

    @property
    def impressions(self) -> int:
        """Impressions the arm's model served."""
        return sum(c.served.impressions for c in self.users.values())

    def _arrays(self, rate: str) -> tuple[np.ndarray, np.ndarray]:
        counts = self.counts(rate)
        return counts.outcome, counts.served

    def counts(self, rate: str) -> RateCounts:
        """Per user (U,): the rate's outcome and impressions, served and the policy's."""
        outcome = _OUTCOME[rate]
        served = [c.served for c in self.users.values()]
        policy = [c.policy for c in self.users.values()]

        def column(of: list[Outcomes], name: str) -> np.ndarray:
            return np.array([getattr(o, name) for o in of], dtype=float)  # (U,)

        return RateCounts(
            outcome=column(served, outcome), served=column(served, "impressions"),
            covariate=column(policy, outcome), policy=column(policy, "impressions"),
        )  # fmt: skip

    def rate(self, rate: str) -> float:
        num, den = self._arrays(rate)
        return float(num.sum() / den.sum()) if den.sum() > 0 else math.nan

    def resampled(self, rate: str, rng: np.random.Generator, resamples: int) -> np.ndarray:
        """The rate over ``resamples`` bootstrap draws of the users, shape (R,)."""
        num, den = self._arrays(rate)
        if den.sum() <= 0:
            return np.full(resamples, math.nan)
        idx = rng.integers(len(num), size=(resamples, len(num)))  # (R, U)
        totals = den[idx].sum(axis=1)  # (R,)
        with np.errstate(divide="ignore", invalid="ignore"):
            return num[idx].sum(axis=1) / totals

    def rate_ci(
        self, rate: str, rng: np.random.Generator, resamples: int = 1000
    ) -> tuple[float, float]:
        return percentile_interval(self.resampled(rate, rng, resamples))


def relative_change_ci(
    arm: ArmTally, baseline: ArmTally, rate: str, rng: np.random.Generator, resamples: int = 1000
) -> tuple[float, tuple[float, float]]:
    """``rate(arm) / rate(baseline) - 1`` and its 95% interval (users resampled per arm)."""
    base = baseline.rate(rate)
    change = arm.rate(rate) / base - 1.0 if base > 0 else math.nan
    treated = arm.resampled(rate, rng, resamples)
    control = baseline.resampled(rate, rng, resamples)
    with np.errstate(divide="ignore", invalid="ignore"):
        return change, percentile_interval(treated / control - 1.0)


@dataclass(frozen=True)
class ArmSummary:
    """What one arm's users saw, with 95% intervals, and its change against the baseline
    (plain, and CUPED-adjusted by the users' rates on the policy's impressions)."""

    arm: str
    users: int
    impressions: int
    rates: Mapping[str, tuple[float, tuple[float, float]]]  # rate -> (value, ci95)
    changes: Mapping[str, tuple[float, tuple[float, float]]]  # vs baseline; empty for it
    cuped: Mapping[str, CupedChange] = field(default_factory=dict)  # vs baseline, adjusted

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm, "users": self.users, "impressions": self.impressions,
            "rates": {r: [v, list(ci)] for r, (v, ci) in self.rates.items()},
            "changes": {r: [v, list(ci)] for r, (v, ci) in self.changes.items()},
            "changes_cuped": {r: c.to_dict() for r, c in self.cuped.items()},
        }  # fmt: skip


def summarise(
    tallies: Mapping[str, ArmTally], baseline: str, seed: int = 0, resamples: int = 1000
) -> list[ArmSummary]:
    """One summary per arm (in ``tallies``' order); changes are against ``baseline``."""
    rng = np.random.default_rng([seed, 23])
    out = []
    for arm, tally in tallies.items():
        rates = {r: (tally.rate(r), tally.rate_ci(r, rng, resamples)) for r in RATES}
        changes, cuped = {}, {}
        if arm != baseline and baseline in tallies:
            control = tallies[baseline]
            changes = {r: relative_change_ci(tally, control, r, rng, resamples) for r in RATES}
            cuped = {
                r: cuped_change(tally.counts(r), control.counts(r), rng, resamples) for r in RATES
            }
        served_users = sum(1 for c in tally.users.values() if c.served.impressions)
        out.append(ArmSummary(arm, served_users, tally.impressions, rates, changes, cuped))
    return out


def repeat_within(last_dislike: Mapping[str, int], creator: str, step: int, window: int) -> bool:
    """Whether ``creator`` was disliked at most ``window`` impressions before ``step``."""
    before = last_dislike.get(creator)
    return before is not None and step - before <= window
