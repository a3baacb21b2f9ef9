"""Time split per user and held-out ranking metrics with a hand-built recommender."""

from __future__ import annotations

import math

import pytest

from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig
from recoil.core.windows import user_histories
from simulator.evaluation import (
    holdout_ranking,
    next_item_cases,
    next_item_ranking,
    split_last_events,
)
from tests.support.recommenders import FixedOrder

LABELS = LabelConfig()


def ev(
    user: str, n: int, item: str, *, liked: bool = False, disliked: bool = False
) -> InteractionEvent:
    return InteractionEvent(
        f"{user}-{n}", user, item, "c", 1000.0 + n, "home", 9.0, 10.0, liked, disliked, False
    )


EVENTS = [
    ev("a", 0, "i0"), ev("a", 1, "i1"), ev("a", 2, "i2", liked=True),
    ev("a", 3, "i3", disliked=True), ev("b", 1, "i5"), ev("b", 0, "i4"),
]  # fmt: skip


FIXED = FixedOrder(("i2", "i3", "i9", "i1"))


def test_split_keeps_each_users_last_events() -> None:
    train, test = split_last_events(EVENTS, 2)
    assert [e.event_id for e in test] == ["a-2", "a-3"]  # b has only 2 events: all train
    assert [e.event_id for e in train] == ["a-0", "a-1", "b-0", "b-1"]
    with pytest.raises(ValueError, match="holdout"):
        split_last_events(EVENTS, 0)


def test_holdout_ranking_exact() -> None:
    train, test = split_last_events(EVENTS, 2)
    result = holdout_ranking(FIXED, user_histories(train, LABELS), test, LABELS, k=2)
    # user a: held-out positive {i2} (i3 is a dislike); top 2 = [i2, i3] -> recall 1, NDCG 1
    assert result.users == ["a"]
    assert (result.recall, result.ndcg) == (1.0, 1.0)


def test_next_item_cases_and_ranking_exact() -> None:
    train, test = split_last_events(EVENTS, 2)
    histories, cases = next_item_cases(user_histories(train, LABELS), test, LABELS)
    assert [c.event_id for c in cases] == ["a-2", "a-3"]
    assert [h.item_id for h in histories[1]] == ["i0", "i1", "i2"]  # a-2 entered as input
    result = next_item_ranking(FIXED, histories, cases, LABELS, k=1)
    # a-2 (positive i2): top 1 = [i2] -> hit; a-3 (dislike i3): i2 is seen -> top 1 = [i3] -> hit
    assert (result.hr_positive, result.ndcg_positive, result.hr_dislike) == (1.0, 1.0, 1.0)
    assert (result.positives, result.dislikes) == (1, 1)
    worse = next_item_ranking(FIXED, histories[:1], cases[:1], LABELS, k=1)
    assert math.isnan(worse.hr_dislike)


def test_a_deeper_cutoff_counts_hits_below_the_top_k() -> None:
    train, test = split_last_events(EVENTS, 2)
    histories, cases = next_item_cases(user_histories(train, LABELS), test, LABELS)
    order = FixedOrder(("i9", "i8", "i3", "i2"))
    result = next_item_ranking(order, histories, cases, LABELS, k=1, deep_k=3)
    # a-2 (positive i2): ranks 4th -> miss at 1 and at 3; a-3 (dislike i3): i2 is seen,
    # ranks 3rd -> miss at 1, hit at 3
    assert (result.hr_positive, result.hr_dislike) == (0.0, 0.0)
    assert (result.deep_k, result.hr_positive_deep, result.hr_dislike_deep) == (3, 0.0, 1.0)
    # without deep_k the deep figures are the top-k ones
    same = next_item_ranking(order, histories, cases, LABELS, k=1)
    assert (same.deep_k, same.hr_dislike_deep) == (1, 0.0)
