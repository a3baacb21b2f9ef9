"""The world's own effect of a dislike on what the user engages with next: a counterfactual
reference for the probe, where the logs' yardstick is only a comparison.

``logged_data.logged_responsiveness`` compares the next positive after long dwells *with*
a dislike against the next positive after *other* long dwells without one. Those are
different histories. Users dislike what they were less drawn to (the dislike logit falls
with interest and rises with the user's objection to the creator), so part of the gap is
who dislikes what, not what a dislike does. The probe (paper section 4) compares the *same*
history with and without the dislike.

``dislike_effect`` asks the world the probe's question. At every long dwell of the logged
run (or every ``every``-th) it branches the impression into "long dwell" and "long dwell +
dislike", with no like in either (the probe's two branches). It then runs the same user and
the same logging policy on for up to ``horizon`` impressions in each branch, with common
random numbers, until the user's next positive. The logging policy never reads the dislike
flag, so the two branches are shown the same items until the user's responses differ.

    responsiveness = share(next positive from the anchor's cluster | dislike)
                     / share(... | no dislike) - 1        (and the same by creator)

It holds the user fixed, so it is the dislike's causal effect alone. A model that reads
a dislike as evidence about the user's tastes may rightly move further; how much further,
the comparison of different histories cannot say. Medium world, seeds 0-2: cluster -31% to -32%,
creator -77% to -78%, where the logs' comparison reads -48% to -51% and -93% to -94%
(docs/experiment.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from recoil.core.labels import LabelConfig, is_long_dwell, is_positive
from simulator.logged_data import Impression, logging_run, make_event, next_positive_shares
from simulator.policy import EngagementPolicy, LoggingPolicyConfig
from simulator.world import Response, World

BRANCH_STREAM = 7  # default_rng([seed, BRANCH_STREAM, user, step]): apart from the log's own


def dislike_effect(
    world: World,
    policy_config: LoggingPolicyConfig,
    labels: LabelConfig,
    users: Sequence[int] | None = None,
    horizon: int = 30,
    every: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """The change in the next positive's cluster / creator share that a dislike causes
    (module docstring), over the long dwells of ``users``' logged runs (all by default)."""
    if horizon < 1 or every < 1:
        raise ValueError(f"horizon and every must be >= 1, got {horizon}, {every}")
    cfg = world.config
    policy = EngagementPolicy(world.item_creator, world.item_cluster, policy_config)
    counts = {flag: np.zeros(3) for flag in (False, True)}  # [cases, same cluster, creator]
    long_dwells = 0
    users = range(cfg.num_users) if users is None else users
    for user in tqdm(users, desc="branching dislikes", unit="user", disable=not progress):
        # the run's return value (the user's state after it) is not needed here
        for impression in logging_run(world, policy, user, cfg.steps_per_user):
            if not is_long_dwell(impression.event, labels):
                continue
            long_dwells += 1
            if (long_dwells - 1) % every:
                continue
            for flag in (False, True):
                found = _next_positive(world, policy, labels, impression, flag, horizon)
                if found is not None:
                    counts[flag] += (1.0, *found)
    return {
        "long_dwells": long_dwells,
        "branched": -(-long_dwells // every),
        "cases": [int(counts[False][0]), int(counts[True][0])],  # branches reaching a positive
        **next_positive_shares(counts),
        "horizon": horizon,
        "every": every,
    }


def _next_positive(
    world: World,
    policy: EngagementPolicy,
    labels: LabelConfig,
    anchor: Impression,
    disliked: bool,
    horizon: int,
) -> tuple[bool, bool] | None:
    """Whether the user's next positive after the anchor, in the branch where the anchor
    was (not) disliked, shares its cluster and its creator; None if none within horizon."""
    cfg = world.config
    response = Response(anchor.response.dwell_ratio, liked=False, disliked=disliked)
    state = world.next_state(anchor.state, response, anchor.item)
    memory = anchor.memory.copy()
    policy.observe(memory, anchor.item, response.dwell_ratio, response.liked)
    # the same draws in both branches: they differ only where the dislike changed the user
    rng = np.random.default_rng([cfg.seed, BRANCH_STREAM, anchor.user, anchor.step])
    creator, cluster = anchor.event.creator_id, anchor.event.cluster_id
    for step in range(anchor.step + 1, min(anchor.step + 1 + horizon, cfg.steps_per_user)):
        item = policy.choose(memory, rng)
        reply = world.next_response(state, item, rng)
        event = make_event(world, anchor.user, step, item, reply, 0.0)  # time: unused
        if is_positive(event, labels):
            return event.cluster_id == cluster, event.creator_id == creator
        policy.observe(memory, item, reply.dwell_ratio, reply.liked)
        state = world.next_state(state, reply, item)
    return None
