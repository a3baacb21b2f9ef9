"""The synthetic world's structure and response model, checked against its formulas."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from simulator.world import WORLD_PRESETS, SimulatedUserState, World, WorldConfig, world_preset

TINY = WORLD_PRESETS["tiny"]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.fixture(scope="module")
def world() -> World:
    return World(TINY)


def test_presets_sizes() -> None:
    large = WORLD_PRESETS["large"]
    assert (large.num_items, large.num_users) == (100_000, 10_000)
    assert TINY.num_items == 6 * 5 * 6 and TINY.num_creators == 30
    assert world_preset("medium", seed=7).seed == 7
    with pytest.raises(ValueError, match="unknown world 'huge'"):
        world_preset("huge")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_users": 0}, "num_users must be >= 1"),
        ({"steps_per_user": 1}, "steps_per_user must be >= 2"),
        ({"favourite_clusters": 99}, "favourite_clusters"),
        ({"skip_share": 1.5}, "skip_share"),
        ({"memory_half_life": 0.0}, "memory_half_life"),
    ],
)
def test_bad_config_says_what_to_fix(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TINY, **change)


def test_items_creators_clusters(world: World) -> None:
    cat = world.catalog
    assert len(cat) == 180
    # item 37: creator 37 // 6 = 6, cluster 6 // 5 = 1
    assert (cat.item_ids[37], cat.creator_ids[37], cat.cluster_ids[37]) == ("i37", "c6", "k1")
    assert cat.creator_of("i179") == "c29" and cat.cluster_of("i179") == "k5"
    assert all(3.0 <= d <= 300.0 for d in cat.durations)


def test_same_seed_same_world_other_seed_other_world(world: World) -> None:
    again = World(TINY)
    assert np.array_equal(again.cluster_taste, world.cluster_taste)
    assert np.array_equal(again.quality, world.quality)
    other = World(replace(TINY, seed=1))
    assert not np.array_equal(other.cluster_taste, world.cluster_taste)


def test_every_user_has_favourite_clusters(world: World) -> None:
    # A favourite gets +2.0 on a N(0, 0.5) taste: each user's best cluster stands out.
    best = world.cluster_taste.max(axis=1)
    assert (best > 1.0).all()


def test_interest_is_the_documented_sum(world: World) -> None:
    u, i = 3, 100
    c, k = int(world.item_creator[i]), int(world.item_cluster[i])
    expected = (
        world.cluster_taste[u, k] + world.user_vec[u] @ world.creator_vec[c] + world.quality[i]
    )
    assert world.interest(u, i) == pytest.approx(expected, abs=1e-12)


def test_probabilities_follow_the_logits_without_memory(world: World) -> None:
    cfg = world.config
    state = world.initial_state(5)
    item = 42
    a = world.interest(5, item)
    assert logit(world.watch_probability(state, item)) == pytest.approx(cfg.engage_bias + a)
    assert logit(world.like_probability(state, item)) == pytest.approx(cfg.like_bias + a)
    expected = cfg.dislike_bias - cfg.dislike_interest_slope * a + world.objection(5, item)
    assert logit(world.dislike_probability(state, item)) == pytest.approx(expected)
    # the medium world's items carry a dislike propensity of their own, for every user
    medium = World(replace(WORLD_PRESETS["medium"], num_users=10))
    for user, item in ((0, 42), (7, 42), (7, 4_999)):
        a = medium.interest(user, item)
        expected = (
            medium.config.dislike_bias
            - medium.config.dislike_interest_slope * a
            + medium.objection(user, item)
            + medium.dislike_propensity[item]
        )
        assert logit(medium.dislike_probability(medium.initial_state(user), item)) == (
            pytest.approx(expected)
        )


def test_a_remembered_dislike_raises_dislikes_of_that_creator_and_cluster(world: World) -> None:
    cfg = world.config
    # item 0 and item 1 share creator c0 (cluster k0); item 6 is creator c1, also cluster k0;
    # item 179 is in cluster k5.
    before = SimulatedUserState(user=2, step=10, disliked=())
    after = SimulatedUserState(
        user=2, step=10, disliked=((0, 0, 9),)
    )  # disliked c0/k0 one step ago
    decay = 0.5 ** (1 / cfg.memory_half_life)
    same_creator = logit(world.dislike_probability(after, 1)) - logit(
        world.dislike_probability(before, 1)
    )
    assert same_creator == pytest.approx(
        (cfg.creator_dislike_boost + cfg.cluster_dislike_boost) * decay
    )
    same_cluster = logit(world.dislike_probability(after, 6)) - logit(
        world.dislike_probability(before, 6)
    )
    assert same_cluster == pytest.approx(cfg.cluster_dislike_boost * decay)
    other = logit(world.dislike_probability(after, 179)) - logit(
        world.dislike_probability(before, 179)
    )
    assert other == pytest.approx(0.0, abs=1e-12)
    watch_drop = logit(world.watch_probability(before, 1)) - logit(
        world.watch_probability(after, 1)
    )
    assert watch_drop == pytest.approx(
        (cfg.creator_engage_penalty + cfg.cluster_engage_penalty) * decay
    )


def test_memory_halves_after_the_half_life(world: World) -> None:
    half_life = int(world.config.memory_half_life)
    state = SimulatedUserState(user=0, step=half_life, disliked=((0, 0, 0),))
    assert world.memory(state, 1) == pytest.approx((0.5, 0.5))
    repeated = SimulatedUserState(user=0, step=half_life, disliked=((0, 0, 0), (0, 0, half_life)))
    assert world.memory(repeated, 1) == pytest.approx((1.0, 1.0))  # the freshest counts


def test_next_state_remembers_dislikes_only(world: World) -> None:
    from simulator.world import Response

    state = world.initial_state(1)
    state = world.next_state(state, Response(0.9, liked=True, disliked=False), 40)
    assert state == SimulatedUserState(user=1, step=1, disliked=())
    state = world.next_state(state, Response(1.0, liked=False, disliked=True), 40)
    assert state == SimulatedUserState(
        user=1, step=2, disliked=((6, 1, 1),)
    )  # i40: creator 6, cluster 1
    for _ in range(20):
        state = world.next_state(state, Response(0.95, liked=False, disliked=True), 0)
    assert len(state.disliked) == world.config.memory_size


def test_next_response_is_the_documented_draw(world: World) -> None:
    cfg = world.config
    state = SimulatedUserState(user=4, step=3, disliked=((2, 0, 1),))
    for seed in range(50):
        item = seed * 3
        watch_u, dwell_u, like_u, dislike_u = np.random.default_rng(seed).random(4)
        response = world.next_response(state, item, np.random.default_rng(seed))
        watched = watch_u < world.watch_probability(state, item)
        disliked = dislike_u < world.dislike_probability(state, item)
        assert response.disliked == disliked
        assert response.liked == (
            watched and not disliked and like_u < world.like_probability(state, item)
        )
        if watched:
            assert response.dwell_ratio == pytest.approx(0.6 + 0.7 * dwell_u)
        elif dwell_u < cfg.skip_share:
            assert response.dwell_ratio < 0.1
        else:
            assert 0.1 <= response.dwell_ratio < 0.6


def test_dislikes_can_follow_a_long_dwell(world: World) -> None:
    rng = np.random.default_rng(0)
    state = world.initial_state(0)
    responses = [world.next_response(state, item, rng) for item in range(180) for _ in range(30)]
    long_dislikes = [r for r in responses if r.disliked and r.dwell_ratio >= 0.8]
    short_dislikes = [r for r in responses if r.disliked and r.dwell_ratio < 0.1]
    assert long_dislikes and short_dislikes
    assert not any(r.liked and r.disliked for r in responses)


def test_unknown_user_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="user 60 is outside"):
        world.initial_state(60)


def test_default_config_is_sane() -> None:
    cfg = WorldConfig()
    assert cfg.num_items == cfg.num_clusters * cfg.creators_per_cluster * cfg.items_per_creator
    assert cfg.to_dict()["name"] == "custom"


def test_aversions_draw_users_in_and_then_make_them_dislike() -> None:
    averse = World(replace(WORLD_PRESETS["aversion"], num_users=30))
    config = averse.config
    assert (averse.aversion.sum(axis=1) == config.aversion_clusters).all()
    plain = World(replace(config, aversion_watch_bonus=0.0, aversion_dislike_boost=0.0))
    state = averse.initial_state(0)
    for item in range(0, config.num_items, 7):
        bonus = averse.averse(0, item)
        assert bonus == bool(averse.aversion[0, averse.item_cluster[item]])
        watch_gap = logit(averse.watch_probability(state, item)) - logit(
            plain.watch_probability(state, item)
        )
        dislike_gap = logit(averse.dislike_probability(state, item)) - logit(
            plain.dislike_probability(state, item)
        )
        assert watch_gap == pytest.approx(config.aversion_watch_bonus * bonus, abs=1e-9)
        assert dislike_gap == pytest.approx(config.aversion_dislike_boost * bonus, abs=1e-9)
    # an aversion cluster is never a favourite (the favourite bonus marks favourites)
    favourite = averse.cluster_taste > config.favourite_bonus / 2 + 3 * config.cluster_taste_scale
    assert not (favourite & averse.aversion).any()


def test_worlds_without_aversions_are_unchanged_by_them() -> None:
    world = World(TINY)
    assert not world.aversion.any()
    # the aversion draws use their own stream: the tastes are what they always were
    again = World(replace(TINY, aversion_clusters=2))
    assert np.array_equal(world.cluster_taste, again.cluster_taste)
    assert again.aversion.sum() == 2 * TINY.num_users
    with pytest.raises(ValueError, match="aversion_clusters"):
        WorldConfig(num_clusters=4, favourite_clusters=3, aversion_clusters=2)


def test_the_dislike_propensity_draws_its_own_stream_and_has_its_scale() -> None:
    world = World(TINY)
    assert not world.dislike_propensity.any()  # presets but medium and large: none
    medium = WORLD_PRESETS["medium"]
    assert (medium.dislike_propensity_scale, medium.dislike_bias) == (1.5, -5.8)
    assert WORLD_PRESETS["large"].dislike_propensity_scale == 1.5
    plain = World(replace(medium, num_users=20, dislike_propensity_scale=0.0))
    propensity = World(replace(medium, num_users=20))
    # every other latent is what it was: a world without propensity is unchanged by it
    for name in ("cluster_taste", "user_vec", "creator_vec", "user_obj", "creator_obj", "quality"):
        assert np.array_equal(getattr(plain, name), getattr(propensity, name)), name
    # 5,000 items: the sample's std is within 3% of the scale
    assert propensity.dislike_propensity.std() == pytest.approx(1.5, rel=0.03)
    assert abs(propensity.dislike_propensity.mean()) < 0.07
