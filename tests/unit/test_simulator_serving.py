"""Serving world users with a recommender: no item shown twice, exploration, determinism."""

from __future__ import annotations

from recoil.core.labels import LabelConfig
from simulator.logged_data import simulate_logs
from simulator.policy import LoggingPolicyConfig
from simulator.serving import ServingConfig, serve_users, starts_from_log
from simulator.world import WORLD_PRESETS, World
from tests.support.recommenders import FixedOrder

LABELS = LabelConfig()
WORLD = World(WORLD_PRESETS["tiny"])
# Always retrieves the catalogue in order (only the history window is excluded).
FIRST_ITEMS = FixedOrder(WORLD.catalog.item_ids)


def test_served_users_never_see_an_item_twice_and_runs_repeat() -> None:
    log = simulate_logs(WORLD, LoggingPolicyConfig(), users=range(5), steps=20)
    starts = starts_from_log(log, 5, LABELS)
    assert all(len(s.seen) == 20 for s in starts)
    config = ServingConfig(steps=100, slate_size=3)
    events, after = serve_users(WORLD, FIRST_ITEMS, starts, config, LABELS)
    again, _ = serve_users(WORLD, FIRST_ITEMS, starts, config, LABELS)
    assert events == again
    for start, user_events, end in zip(starts, events, after, strict=True):
        shown = [e.item_id for e in user_events]
        assert len(set(shown)) == 100 and not set(shown) & start.seen
        assert end.state.step == 120 and len(end.seen) == 120
        assert [e.event_id for e in user_events[:1]] == [f"u{start.state.user}-20"]


def test_without_exploration_users_see_the_slate_with_it_anything() -> None:
    log = simulate_logs(WORLD, LoggingPolicyConfig(), users=range(4), steps=10)
    starts = starts_from_log(log, 4, LABELS)
    greedy, _ = serve_users(WORLD, FIRST_ITEMS, starts, ServingConfig(steps=5), LABELS)
    for start, user_events in zip(starts, greedy, strict=True):
        unseen = [i for i in WORLD.catalog.item_ids if i not in start.seen]
        # every shown item is among the first 10 unseen + those shown before it
        assert all(e.item_id in unseen[:15] for e in user_events)
    explored, _ = serve_users(
        WORLD, FIRST_ITEMS, starts, ServingConfig(steps=20, explore=1.0), LABELS
    )
    late = {int(e.item_id[1:]) for user_events in explored for e in user_events}
    assert max(late) > 100  # uniform exploration reaches the end of the catalogue
