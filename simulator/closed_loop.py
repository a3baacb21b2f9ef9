"""Closed-loop evaluation: world users consume a recommender's items for many steps.

Users are served by ``simulator.serving.serve_users`` (top ``slate_size``
unseen items per step, one shown at random, no exploration), starting where
the logging left them. Measured per impression, as in the paper's live
experiments:

- ``dislike_rate``: dislikes / impressions,
- ``repeat_dislike_creator_rate``: dislikes of a creator the user had already
  disliked (in the logged history or earlier in the loop) / impressions.

Every arm faces the same user draws (``default_rng([seed, 2, user])``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from recoil.core.labels import LabelConfig, is_long_dwell, is_skip
from simulator.recommender import Recommender
from simulator.serving import ServingConfig, UserStart, serve_users
from simulator.world import World

__all__ = ["ClosedLoopConfig", "ClosedLoopResult", "UserStart", "run_closed_loop"]


@dataclass(frozen=True)
class ClosedLoopConfig:
    """How many users and steps the closed loop runs."""

    users: int = 500  # users sampled from the world (the first ``users`` ids)
    steps: int = 100  # impressions per user
    slate_size: int = 10  # recommendations per step; the user sees one of them
    batch_size: int = 4096  # histories per top_k call
    seed: int = 0  # user draws are a pure function of (seed, user)

    def __post_init__(self) -> None:
        if self.users < 1 or self.steps < 1 or self.slate_size < 1:
            raise ValueError("ClosedLoopConfig: users, steps and slate_size must be >= 1")


@dataclass(frozen=True)
class ClosedLoopResult:
    impressions: int
    dislikes: int
    repeat_dislikes_creator: int
    skips: int
    long_dwells: int
    dislike_rate: float
    repeat_dislike_creator_rate: float
    skip_rate: float
    long_dwell_rate: float
    per_user_dislikes: list[int]  # for bootstrap intervals across users

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        del result["per_user_dislikes"]
        return result


def run_closed_loop(
    world: World,
    recommender: Recommender,
    starts: Sequence[UserStart],
    config: ClosedLoopConfig,
    labels: LabelConfig,
    progress: bool = False,
) -> ClosedLoopResult:
    """Every user consumes ``config.steps`` recommended items; rates over all impressions."""
    serving = ServingConfig(
        steps=config.steps, slate_size=config.slate_size, explore=0.0, seed=config.seed,
        stream=2, batch_size=config.batch_size,
    )  # fmt: skip
    served, _ = serve_users(world, recommender, starts, serving, labels, progress, "closed loop")
    per_user = [0] * len(starts)
    repeats = skips = long_dwells = 0
    for u, (start, events) in enumerate(zip(starts, served, strict=True)):
        disliked = set(start.disliked_creators)
        for event in events:
            skips += is_skip(event, labels)
            long_dwells += is_long_dwell(event, labels)
            if event.disliked:
                per_user[u] += 1
                repeats += event.creator_id in disliked
                disliked.add(event.creator_id)
    n = config.steps * len(starts)
    dislikes = sum(per_user)
    return ClosedLoopResult(
        impressions=n,
        dislikes=dislikes,
        repeat_dislikes_creator=repeats,
        skips=skips,
        long_dwells=long_dwells,
        dislike_rate=dislikes / n,
        repeat_dislike_creator_rate=repeats / n,
        skip_rate=skips / n,
        long_dwell_rate=long_dwells / n,
        per_user_dislikes=per_user,
    )
