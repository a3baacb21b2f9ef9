"""Closed-loop evaluation: world users consume a recommender's items for many steps.

At every step the recommender returns its top ``slate_size`` unseen items for
each user's current history (one batched ``top_k`` call for all users); the
user is shown one of them uniformly at random (a stand-in for the ranking
stage that follows retrieval), reacts through the world's response model, and
the event enters the history through ``recoil.windows.step``.

Measured per impression, as in the paper's live experiments:

- ``dislike_rate``: dislikes / impressions,
- ``repeat_dislike_creator_rate``: dislikes of a creator the user had already
  disliked (in the logged history or earlier in the loop) / impressions.

Randomness is per user (``default_rng([seed, 2, user])``) so every arm faces
the same user draws (common random numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from recoil.labels import LabelConfig, is_long_dwell, is_skip
from recoil.windows import History, step
from simulator.logged_data import make_event, next_timestamp
from simulator.recommender import Recommender, top_k_batched
from simulator.world import UserState, World


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
class UserStart:
    """Where a user stands when the closed loop begins."""

    state: UserState
    history: History
    time: float  # the user's clock
    disliked_creators: frozenset[str]  # creators disliked in the logged history


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
    catalog = world.catalog
    rngs = [np.random.default_rng([config.seed, 2, s.state.user]) for s in starts]
    states = [s.state for s in starts]
    histories = [s.history for s in starts]
    times = [s.time for s in starts]
    disliked_creators = [set(s.disliked_creators) for s in starts]
    per_user = [0] * len(starts)
    dislikes = repeats = skips = long_dwells = 0
    for _ in tqdm(range(config.steps), desc="closed loop", disable=not progress):
        slates = top_k_batched(
            recommender, histories, config.slate_size, exclude_seen=True,
            batch_size=config.batch_size,
        )  # fmt: skip
        for u, slate in enumerate(slates):
            if not slate:
                raise ValueError(f"recommender returned no items for user {states[u].user}")
            rng = rngs[u]
            item = catalog.index(slate[int(rng.integers(len(slate)))])
            response = world.next_response(states[u], item, rng)
            event = make_event(world, states[u].user, states[u].step, item, response, times[u])
            if response.disliked:
                dislikes += 1
                per_user[u] += 1
                repeats += event.creator_id in disliked_creators[u]
                disliked_creators[u].add(event.creator_id)
            skips += is_skip(event, labels)
            long_dwells += is_long_dwell(event, labels)
            states[u] = world.next_state(states[u], response, item)
            histories[u], _ = step(event, histories[u], labels)
            times[u] = next_timestamp(times[u], event.dwell_seconds, rng)
    n = config.steps * len(starts)
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
