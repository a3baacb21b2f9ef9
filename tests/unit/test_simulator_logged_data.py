"""World logs: the logging policy, the event schema, world statistics and windowing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from recoil.core.events import InteractionEvent, parse_event
from recoil.core.labels import LabelConfig
from recoil.core.windows import events_to_examples
from simulator.logged_data import log_statistics, logged_responsiveness, simulate_logs
from simulator.policy import EngagementPolicy, LoggingPolicyConfig, PolicyMemory
from simulator.world import WORLD_PRESETS, World

LABELS = LabelConfig()


@pytest.fixture(scope="module")
def world() -> World:
    return World(WORLD_PRESETS["tiny"])


def test_policy_re_exposes_the_recent_creator_even_after_a_dislike(world: World) -> None:
    only_creator = LoggingPolicyConfig(p_same_creator=1.0, p_same_cluster=0.0, p_long_term=0.0)
    policy = EngagementPolicy(world.item_creator, world.item_cluster, only_creator)
    memory = PolicyMemory()
    # i8 (creator c1) was watched in full; the policy has no way to know it was disliked.
    policy.observe(memory, 8, dwell_ratio=1.0, liked=False)
    rng = np.random.default_rng(0)
    shown = []
    for _ in range(5):
        item = policy.choose(memory, rng)
        shown.append(item)
        policy.observe(memory, item, dwell_ratio=1.0, liked=False)
    assert sorted(shown) == [6, 7, 9, 10, 11]  # c1's other five items, none repeated
    # The creator is exhausted: the policy falls back to the same cluster (k0 = items 0..29).
    assert 0 <= policy.choose(memory, rng) < 30


def test_policy_never_shows_an_item_twice(world: World) -> None:
    policy = EngagementPolicy(world.item_creator, world.item_cluster, LoggingPolicyConfig())
    memory = PolicyMemory()
    rng = np.random.default_rng(1)
    shown = []
    for _ in range(180):
        item = policy.choose(memory, rng)
        shown.append(item)
        policy.observe(memory, item, dwell_ratio=float(rng.random()), liked=False)
    assert sorted(shown) == list(range(180))
    with pytest.raises(ValueError, match="seen every item"):
        policy.choose(memory, rng)


def test_bad_policy_config_is_refused() -> None:
    with pytest.raises(ValueError, match="sum to <= 1"):
        LoggingPolicyConfig(p_same_creator=0.6, p_same_cluster=0.6)


def test_logs_are_valid_events_and_deterministic(world: World) -> None:
    log = simulate_logs(world, LoggingPolicyConfig(), users=[0, 1, 2])
    assert len(log.events) == 3 * world.config.steps_per_user
    for event in log.events:
        assert parse_event(event.to_json()) == event
    again = simulate_logs(world, LoggingPolicyConfig(), users=[2])
    assert again.events == log.events[2 * 60 :]  # a user's log does not depend on the others
    assert log.final_states[0].step == world.config.steps_per_user
    times = [e.timestamp for e in log.events[:60]]
    assert times == sorted(times)


def test_world_statistics_are_realistic(world: World) -> None:
    stats = log_statistics(simulate_logs(world, LoggingPolicyConfig()).events, LABELS)
    assert stats["impressions"] == 60 * 60
    assert 0.005 <= stats["dislike_rate"] <= 0.05
    assert 0.20 <= stats["skip_rate"] <= 0.50
    assert stats["dislikes_with_long_dwell"] > 0.0
    # What follows a dislike is visible: the creator comes back and is disliked far more often.
    assert stats["reexposed_after_dislike"] > 0.2
    assert stats["dislike_rate_reexposed"] > 3 * stats["dislike_rate"]


def test_history_cluster_share_is_the_share_of_recent_items_from_the_same_cluster(
    world: World,
) -> None:
    events = simulate_logs(world, LoggingPolicyConfig(), users=[0]).events[:12]
    # impression 10 (k0) follows 9 of 10 in k0; impression 11 (k1) follows 1 of 11 in k1
    clusters = ["k1"] + ["k0"] * 10 + ["k1"]
    relabelled = [replace(e, cluster_id=k) for e, k in zip(events, clusters, strict=True)]
    stats = log_statistics(relabelled, LABELS)
    assert stats["history_cluster_share"] == pytest.approx((9 / 10 + 1 / 11) / 2)
    # a 5-item window sees only the k0 run: 5 of 5, then 0 of 5
    stats = log_statistics(relabelled, LABELS, history_window=5)
    assert stats["history_cluster_share"] == pytest.approx(0.5)


def test_windowing_of_world_logs(world: World) -> None:
    log = simulate_logs(world, LoggingPolicyConfig(), users=[0, 1])
    labels = LabelConfig(history_length=10)
    examples = events_to_examples(log.events, labels)
    by_id = {e.event_id: e for e in log.events}
    kinds = {ex.label_kind for ex in examples}
    assert kinds <= {"positive", "dislike", "skip"} and "positive" in kinds
    for ex in examples:
        event = by_id[ex.event_id]
        assert ex.label_item_id == event.item_id and ex.label_cluster_id == event.cluster_id
        assert len(ex.history) == min(10, int(ex.event_id.split("-")[1]))
        # The history is the user's previous events, in order, flags as logged.
        user, position = ex.event_id.split("-")
        previous = [by_id[f"{user}-{p}"] for p in range(int(position))][-10:]
        assert [h.item_id for h in ex.history] == [e.item_id for e in previous]
        assert [h.disliked for h in ex.history] == [e.disliked for e in previous]
    dislikes = sum(e.disliked for e in log.events)
    assert sum(ex.label_kind == "dislike" for ex in examples) == dislikes


def test_logged_responsiveness_compares_next_positives_after_a_dislike(world: World) -> None:
    base = simulate_logs(world, LoggingPolicyConfig(), users=[0]).events[:6]

    # long dwell (k0/c0) -> next positive k0/c0; long dwell + dislike (k0/c0) -> k1/c1
    def event(n: int, cluster: str, creator: str, disliked: bool = False) -> InteractionEvent:
        full = base[n].item_duration_seconds or 30.0  # a full watch: a long dwell
        return replace(base[n], cluster_id=cluster, creator_id=creator, liked=False,
                       disliked=disliked, dwell_seconds=full)  # fmt: skip

    events = [
        event(0, "k0", "c0"), event(1, "k0", "c0"),
        event(2, "k0", "c0", disliked=True), event(3, "k1", "c1"),
    ]  # fmt: skip
    result = logged_responsiveness(events, LABELS)
    # plain long dwells: events 0 (next positive: 1, same k/c) and 1 (next: 3, other k/c)
    assert (result["long_dwells"], result["long_dwell_dislikes"]) == (2, 1)
    assert result["next_positive_same_cluster"] == [0.5, 0.0]
    assert result["next_positive_same_creator"] == [0.5, 0.0]
    assert (result["cluster"], result["creator"]) == (-1.0, -1.0)
