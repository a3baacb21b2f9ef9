"""The world's own effect of a dislike: the same logged histories branched with and without it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from recoil.core.labels import LabelConfig
from simulator.dislike_effect import dislike_effect
from simulator.policy import LoggingPolicyConfig
from simulator.world import WORLD_PRESETS, World

LABELS = LabelConfig()
POLICY = LoggingPolicyConfig()
USERS = range(12)


@pytest.fixture(scope="module")
def effect() -> dict[str, Any]:
    return dislike_effect(World(WORLD_PRESETS["tiny"]), POLICY, LABELS, users=USERS)


def test_a_dislike_that_changes_nothing_has_no_effect() -> None:
    # with no memory of dislikes in the watch and dislike logits, the two branches draw
    # the same numbers, are shown the same items and respond alike: exactly 0
    inert = replace(
        WORLD_PRESETS["tiny"],
        creator_engage_penalty=0.0,
        cluster_engage_penalty=0.0,
        creator_dislike_boost=0.0,
        cluster_dislike_boost=0.0,
    )
    result = dislike_effect(World(inert), POLICY, LABELS, users=USERS)
    assert result["cases"][0] == result["cases"][1] > 100
    assert result["cluster"] == 0.0
    assert result["creator"] == 0.0


def test_a_remembered_dislike_moves_the_next_positive_away(effect: dict[str, Any]) -> None:
    # the tiny world penalises a disliked creator's items twice as hard as its cluster's,
    # and the creator's items are part of the cluster
    assert effect["creator"] < effect["cluster"] < 0
    plain, disliked = effect["next_positive_same_creator"]
    assert disliked < plain
    assert effect["branched"] == effect["long_dwells"] > 100


def test_it_is_a_pure_function_of_the_world(effect: dict[str, Any]) -> None:
    again = dislike_effect(World(WORLD_PRESETS["tiny"]), POLICY, LABELS, users=USERS)
    assert again == effect


def test_every_nth_long_dwell_is_branched(effect: dict[str, Any]) -> None:
    sparse = dislike_effect(World(WORLD_PRESETS["tiny"]), POLICY, LABELS, users=USERS, every=3)
    assert sparse["long_dwells"] == effect["long_dwells"]
    assert sparse["branched"] == -(-effect["long_dwells"] // 3)
    assert sum(sparse["cases"]) < sum(effect["cases"])


@pytest.mark.parametrize(("horizon", "every"), [(0, 1), (30, 0)])
def test_bad_arguments_are_refused(horizon: int, every: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        dislike_effect(World(WORLD_PRESETS["tiny"]), POLICY, LABELS, USERS, horizon, every)
