"""Logged training data: the world's users consuming the logging policy's items.

Every impression becomes a ``recoil.core.events.InteractionEvent`` (ids as strings,
cluster filled), the same schema the stream agents read, so offline training
data comes from ``recoil.core.windows.events_to_examples`` exactly as online.

Randomness is per user (``default_rng([seed, 1, user])``): a user's log does not
depend on how many other users there are or in what order they are simulated.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from recoil.core.events import InteractionEvent
from recoil.core.labels import (
    LabelConfig,
    is_long_dwell,
    is_negative_feedback,
    is_positive,
    is_skip,
)
from recoil.core.windows import events_by_user
from simulator.policy import EngagementPolicy, LoggingPolicyConfig, PolicyMemory
from simulator.world import Response, SimulatedUserState, World

START_TIME = 1_704_067_200.0  # 2024-01-01T00:00:00Z; logs start within a day of it
MEAN_GAP_SECONDS = 3.0  # pause between two items in a session
SESSION_BREAK_PROBABILITY = 1 / 40  # chance a session ends after an impression
MEAN_SESSION_BREAK_SECONDS = 6 * 3600.0  # mean pause between sessions
SURFACE = "home"


@dataclass(frozen=True)
class WorldLog:
    """The logged events (per user, in time order) and each user's state afterwards."""

    events: list[InteractionEvent]
    final_states: list[SimulatedUserState]
    end_times: list[float]  # each user's clock after their last event


def make_event(
    world: World, user: int, step: int, item: int, response: Response, timestamp: float
) -> InteractionEvent:
    """The wire event for one impression."""
    catalog = world.catalog
    duration = catalog.durations[item]
    return InteractionEvent(
        event_id=f"u{user}-{step}",
        user_id=f"u{user}",
        item_id=catalog.item_ids[item],
        creator_id=catalog.creator_ids[item],
        cluster_id=catalog.cluster_ids[item],
        timestamp=round(timestamp, 3),
        surface=SURFACE,
        dwell_seconds=round(response.dwell_ratio * duration, 3),
        item_duration_seconds=duration,
        liked=response.liked,
        disliked=response.disliked,
        dismissed=False,
    )


def next_timestamp(now: float, dwell_seconds: float, rng: np.random.Generator) -> float:
    """When the next impression happens: after the dwell, a short gap or a session break."""
    gap_u, break_u = rng.random(2).tolist()
    if break_u < SESSION_BREAK_PROBABILITY:
        return now + dwell_seconds - MEAN_SESSION_BREAK_SECONDS * math.log1p(-gap_u)
    return now + dwell_seconds - MEAN_GAP_SECONDS * math.log1p(-gap_u)


@dataclass(frozen=True)
class Impression:
    """One logged impression with the user's and the policy's state *before* it."""

    user: int
    step: int
    item: int
    response: Response
    event: InteractionEvent
    state: SimulatedUserState  # the user before this impression
    memory: PolicyMemory  # the policy before it: a live object, ``copy()`` it to keep it


def logging_run(
    world: World, policy: EngagementPolicy, user: int, steps: int
) -> Generator[Impression, None, tuple[SimulatedUserState, float]]:
    """One user consuming ``steps`` items the policy chose; returns the user's state and
    clock afterwards. Randomness: ``default_rng([seed, 1, user])``, drawn in a fixed order."""
    rng = np.random.default_rng([world.config.seed, 1, user])
    state = world.initial_state(user)
    memory = PolicyMemory()
    now = START_TIME + 86_400.0 * float(rng.random())
    for step in range(steps):
        item = policy.choose(memory, rng)
        response = world.next_response(state, item, rng)
        event = make_event(world, user, step, item, response, now)
        yield Impression(user, step, item, response, event, state, memory)
        policy.observe(memory, item, response.dwell_ratio, response.liked)
        state = world.next_state(state, response, item)
        now = next_timestamp(now, event.dwell_seconds, rng)
    return state, now


def simulate_logs(
    world: World,
    policy_config: LoggingPolicyConfig,
    users: Sequence[int] | None = None,
    progress: bool = False,
    steps: int | None = None,
) -> WorldLog:
    """Each user consumes ``steps`` (default ``steps_per_user``) items the policy chose."""
    cfg = world.config
    steps = cfg.steps_per_user if steps is None else steps
    policy = EngagementPolicy(world.item_creator, world.item_cluster, policy_config)
    users = range(cfg.num_users) if users is None else users
    events: list[InteractionEvent] = []
    states: list[SimulatedUserState] = []
    end_times: list[float] = []
    for user in tqdm(users, desc="logging world users", unit="user", disable=not progress):
        state, now = _collect(logging_run(world, policy, user, steps), events)
        states.append(state)
        end_times.append(now)
    return WorldLog(events=events, final_states=states, end_times=end_times)


def _collect(
    run: Generator[Impression, None, tuple[SimulatedUserState, float]],
    events: list[InteractionEvent],
) -> tuple[SimulatedUserState, float]:
    """Append the run's events to ``events``; the run's result (state and clock after)."""
    while True:
        try:
            events.append(next(run).event)
        except StopIteration as done:
            return done.value


def log_statistics(
    events: Iterable[InteractionEvent],
    config: LabelConfig,
    horizon: int = 20,
    history_window: int = 49,
) -> dict[str, Any]:
    """Rates that say whether a logged world is realistic and shows what follows a dislike.

    ``reexposed_after_dislike``: share of dislikes followed, within ``horizon``
    impressions, by another item of the same creator. ``dislike_rate_reexposed``:
    dislike rate of impressions whose creator the user disliked within the
    previous ``horizon`` impressions (compare with ``dislike_rate``).
    ``history_cluster_share``: for impressions after at least 10 others, the share of
    the previous ``history_window`` items from the impression's cluster (compare with
    the probe's ``trajectory_cluster_share``).
    """
    by_user = events_by_user(events)
    n = dislikes = skips = long_dwells = likes = long_dislikes = 0
    followed = reexposures = redislikes = 0
    cluster_shares: list[float] = []
    for user_events in by_user.values():
        clusters = np.array([e.cluster_id or "" for e in user_events])
        for i in range(10, len(user_events)):
            behind_clusters = clusters[max(0, i - history_window) : i]
            cluster_shares.append(float(np.mean(behind_clusters == clusters[i])))
        flags = [is_negative_feedback(e, config) for e in user_events]
        for i, event in enumerate(user_events):
            n += 1
            dislikes += flags[i]
            skips += is_skip(event, config)
            long_dwells += is_long_dwell(event, config)
            likes += event.liked
            long_dislikes += flags[i] and is_long_dwell(event, config)
            if flags[i]:
                ahead = user_events[i + 1 : i + 1 + horizon]
                followed += any(e.creator_id == event.creator_id for e in ahead)
            behind = range(max(0, i - horizon), i)
            if any(flags[j] and user_events[j].creator_id == event.creator_id for j in behind):
                reexposures += 1
                redislikes += flags[i]
    return {
        "users": len(by_user),
        "impressions": n,
        "dislike_rate": dislikes / max(n, 1),
        "skip_rate": skips / max(n, 1),
        "long_dwell_rate": long_dwells / max(n, 1),
        "like_rate": likes / max(n, 1),
        "dislikes_with_long_dwell": long_dislikes / max(dislikes, 1),
        "reexposed_after_dislike": followed / max(dislikes, 1),
        "reexposures": reexposures,
        "dislike_rate_reexposed": redislikes / max(reexposures, 1),
        "reexposure_horizon": horizon,
        "history_cluster_share": float(np.mean(cluster_shares)) if cluster_shares else 0.0,
    }


def logged_responsiveness(
    events: Iterable[InteractionEvent], config: LabelConfig, horizon: int = 30
) -> dict[str, Any]:
    """What the logs say a recommender *should* do after a dislike, as a yardstick for the probe.

    For every long dwell, the user's next positive within ``horizon`` impressions: the
    share of those from the same cluster / creator after a long dwell *with* a dislike
    and *without*, and their relative change — the probe's measure, on the users'
    own next positives instead of a model's recommendations. It compares *different*
    histories: users dislike what they were less drawn to, so part of the change is who
    dislikes what. ``simulator.dislike_effect`` branches the same histories instead (the
    probe's counterfactual, asked of the world): in the medium world it reads about -31% /
    -78% where this reads -48% to -51% / -93%.
    """
    counts = {flag: np.zeros(3) for flag in (False, True)}  # [cases, same cluster, creator]
    for user_events in events_by_user(events).values():
        positive = [is_positive(e, config) for e in user_events]
        for i, event in enumerate(user_events):
            if not is_long_dwell(event, config):
                continue
            ahead = range(i + 1, min(i + 1 + horizon, len(positive)))
            nxt = next((j for j in ahead if positive[j]), None)
            if nxt is None:
                continue
            after = user_events[nxt]
            counts[is_negative_feedback(event, config)] += (
                1.0,
                after.cluster_id == event.cluster_id,
                after.creator_id == event.creator_id,
            )
    return {
        "long_dwells": int(counts[False][0]),
        "long_dwell_dislikes": int(counts[True][0]),
        **next_positive_shares(counts),
        "horizon": horizon,
    }


def next_positive_shares(counts: dict[bool, np.ndarray]) -> dict[str, Any]:
    """From [cases, same cluster, same creator] counts without (False) and with (True) a
    dislike: each share and the relative change a dislike makes (NaN without cases)."""
    share = {flag: c[1:] / max(c[0], 1.0) for flag, c in counts.items()}  # (cluster, creator)
    change = [
        float(d / p - 1.0) if p > 0 and counts[True][0] > 0 else float("nan")
        for p, d in zip(share[False], share[True], strict=True)
    ]
    return {
        "next_positive_same_cluster": [float(share[False][0]), float(share[True][0])],
        "next_positive_same_creator": [float(share[False][1]), float(share[True][1])],
        "cluster": change[0],
        "creator": change[1],
    }
