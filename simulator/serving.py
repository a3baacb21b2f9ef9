"""World users served by a recommender, step by step: the loop behind closed-loop
evaluation and behind model-served training logs.

At every step the recommender retrieves its top ``slate_size`` items for each
user's current history (one batched ``top_k`` call for all users), items the
user was already shown are dropped, and the user is shown one of the rest
uniformly at random (a stand-in for the ranking stage after retrieval) or,
with probability ``explore``, a uniformly random unseen item. The user reacts
through the world's response model; the event enters the history through
``recoil.core.windows.step``.

Randomness is per user (``default_rng([seed, stream, user])``), so two
recommenders serving the same users face the same user draws.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig
from recoil.core.windows import History, step, user_histories
from simulator.logged_data import WorldLog, make_event, next_timestamp
from simulator.recommender import Recommender, top_k_batched
from simulator.world import SimulatedUserState, World

RETRIEVE_EXTRA = 30  # retrieved beyond the slate, to make up for items already shown


@dataclass(frozen=True)
class UserStart:
    """Where a user stands when serving begins."""

    state: SimulatedUserState
    history: History
    time: float  # the user's clock
    disliked_creators: frozenset[str]  # creators the user disliked before
    seen: frozenset[str] = frozenset()  # items shown before (never shown again)


@dataclass(frozen=True)
class ServingConfig:
    steps: int  # impressions per user
    slate_size: int = 10  # retrieved items the shown one is drawn from
    explore: float = 0.0  # share of impressions that are a uniformly random unseen item
    seed: int = 0  # with ``stream``, seeds each user's draws
    stream: int = 2  # separates the draws of different uses (closed loop, logging)
    batch_size: int = 4096  # histories per top_k call

    def __post_init__(self) -> None:
        if self.steps < 0 or self.slate_size < 1 or not 0.0 <= self.explore <= 1.0:
            raise ValueError("ServingConfig: need steps >= 0, slate_size >= 1, 0 <= explore <= 1")


def serve_users(
    world: World,
    recommender: Recommender,
    starts: Sequence[UserStart],
    config: ServingConfig,
    labels: LabelConfig,
    progress: bool = False,
    desc: str = "serving",
) -> tuple[list[list[InteractionEvent]], list[UserStart]]:
    """Each user's served events (in order), and where each user stands afterwards."""
    catalog = world.catalog
    rngs = [np.random.default_rng([config.seed, config.stream, s.state.user]) for s in starts]
    states = [s.state for s in starts]
    histories = [s.history for s in starts]
    times = [s.time for s in starts]
    seen = [set(s.seen) for s in starts]
    disliked = [set(s.disliked_creators) for s in starts]
    events: list[list[InteractionEvent]] = [[] for _ in starts]
    for _ in tqdm(range(config.steps), desc=desc, disable=not progress):
        slates = top_k_batched(
            recommender, histories, config.slate_size + RETRIEVE_EXTRA, exclude_seen=True,
            batch_size=config.batch_size,
        )  # fmt: skip
        for u, retrieved in enumerate(slates):
            rng = rngs[u]
            slate = [i for i in retrieved if i not in seen[u]][: config.slate_size]
            if not slate or float(rng.random()) < config.explore:
                item = _unseen_item(len(catalog), seen[u], catalog.item_ids, rng)
            else:
                item = catalog.index(slate[int(rng.integers(len(slate)))])
            response = world.next_response(states[u], item, rng)
            event = make_event(world, states[u].user, states[u].step, item, response, times[u])
            events[u].append(event)
            seen[u].add(event.item_id)
            if event.disliked:
                disliked[u].add(event.creator_id)
            states[u] = world.next_state(states[u], response, item)
            histories[u], _ = step(event, histories[u], labels)
            times[u] = next_timestamp(times[u], event.dwell_seconds, rng)
    after = [
        UserStart(states[u], histories[u], times[u], frozenset(disliked[u]), frozenset(seen[u]))
        for u in range(len(starts))
    ]
    return events, after


def starts_from_log(world_log: WorldLog, users: int, labels: LabelConfig) -> list[UserStart]:
    """The first ``users`` users as a log left them: state, history, clock, dislikes, seen."""
    histories = user_histories(world_log.events, labels)
    disliked: dict[str, set[str]] = defaultdict(set)
    seen: dict[str, set[str]] = defaultdict(set)
    for event in world_log.events:
        seen[event.user_id].add(event.item_id)
        if event.disliked:
            disliked[event.user_id].add(event.creator_id)
    starts = []
    for state, end in zip(world_log.final_states[:users], world_log.end_times, strict=False):
        user_id = f"u{state.user}"
        history = histories[user_id]
        dislikes, shown = frozenset(disliked[user_id]), frozenset(seen[user_id])
        starts.append(UserStart(state, history, end, dislikes, shown))
    return starts


def _unseen_item(
    num_items: int, seen: set[str], item_ids: Sequence[str], rng: np.random.Generator
) -> int:
    if len(seen) >= num_items:
        raise ValueError("a user has seen every item; use fewer steps or more items")
    while True:
        item = int(rng.integers(num_items))
        if item_ids[item] not in seen:
            return item
