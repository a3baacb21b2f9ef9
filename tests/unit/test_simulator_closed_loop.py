"""The closed loop on the tiny world with hand-built recommenders."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from recoil.core.labels import LabelConfig
from recoil.core.records import HistoryItem
from recoil.core.windows import user_histories
from simulator.closed_loop import ClosedLoopConfig, UserStart, run_closed_loop
from simulator.logged_data import simulate_logs
from simulator.policy import LoggingPolicyConfig
from simulator.world import WORLD_PRESETS, World

LABELS = LabelConfig()
WORLD = World(WORLD_PRESETS["tiny"])


class CreatorRecommender:
    """Recommends the last item's creator's unseen items (``chase``) or avoids disliked ones."""

    def __init__(self, avoid_disliked: bool) -> None:
        self.avoid_disliked = avoid_disliked

    def top_k(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = False
    ) -> list[list[str]]:
        cat = WORLD.catalog
        out = []
        for history in histories:
            seen = {h.item_id for h in history}
            avoid = {h.creator_id for h in history if h.disliked} if self.avoid_disliked else set()
            last = history[-1].creator_id
            ranked = sorted(
                (i for i in cat.item_ids if i not in seen and cat.creator_of(i) not in avoid),
                key=lambda i: (cat.creator_of(i) != last, int(i[1:])),
            )
            out.append(ranked[:k])
        return out


def starts() -> list[UserStart]:
    log = simulate_logs(WORLD, LoggingPolicyConfig(), users=range(30))
    histories = user_histories(log.events, LABELS)
    return [
        UserStart(
            state=state,
            history=histories[f"u{state.user}"],
            time=end,
            disliked_creators=frozenset(
                e.creator_id for e in log.events if e.disliked and e.user_id == f"u{state.user}"
            ),
        )
        for state, end in zip(log.final_states, log.end_times, strict=True)
    ]


CONFIG = ClosedLoopConfig(users=30, steps=40, slate_size=3)


def test_counts_add_up_and_runs_repeat_exactly() -> None:
    first = run_closed_loop(WORLD, CreatorRecommender(False), starts(), CONFIG, LABELS)
    second = run_closed_loop(WORLD, CreatorRecommender(False), starts(), CONFIG, LABELS)
    assert first == second
    assert first.impressions == 30 * 40
    assert first.dislike_rate == pytest.approx(first.dislikes / 1200)
    assert sum(first.per_user_dislikes) == first.dislikes
    assert first.repeat_dislikes_creator <= first.dislikes
    assert "per_user_dislikes" not in first.to_dict()


def test_avoiding_disliked_creators_cuts_repeated_dislikes() -> None:
    chase = run_closed_loop(WORLD, CreatorRecommender(False), starts(), CONFIG, LABELS)
    avoid = run_closed_loop(WORLD, CreatorRecommender(True), starts(), CONFIG, LABELS)
    assert chase.repeat_dislikes_creator > 0
    assert avoid.repeat_dislike_creator_rate < 0.5 * chase.repeat_dislike_creator_rate
    assert avoid.dislike_rate < chase.dislike_rate
