"""Labelling and windowing rules, exact on hand-built events."""

from __future__ import annotations

import pytest

from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig, dwell_bucket, gap_bucket, is_positive, label_event
from recoil.core.records import NUM_DWELL_BUCKETS, NUM_GAP_BUCKETS, HistoryItem, TrainingExample
from recoil.core.windows import events_to_examples, step, user_histories

CFG = LabelConfig(history_length=3)


def ev(
    i: int,
    dwell: float = 25.0,
    duration: float = 30.0,
    *,
    liked: bool = False,
    disliked: bool = False,
    dismissed: bool = False,
    user: str = "u",
    ts: float | None = None,
) -> InteractionEvent:
    return InteractionEvent(
        event_id=f"e{i}",
        user_id=user,
        item_id=f"i{i}",
        creator_id=f"c{i % 2}",
        cluster_id="k",
        timestamp=1000.0 + 10 * i if ts is None else ts,
        surface="home",
        dwell_seconds=dwell,
        item_duration_seconds=duration,
        liked=liked,
        disliked=disliked,
        dismissed=dismissed,
    )


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ev(1, dwell=29), ("positive", 1.0)),  # long dwell
        (ev(1, dwell=1, liked=True), ("positive", 1.0)),  # like beats a skip
        (ev(1, dwell=30, disliked=True), ("dislike", 1.0)),  # long dwell + dislike
        (ev(1, dwell=10, dismissed=True), ("dislike", 1.0)),
        (ev(1, dwell=2), ("skip", 0.25)),  # 2/30 < 0.1
        (ev(1, dwell=10), None),  # middling dwell: no label
        (ev(1, dwell=25, duration=0), ("positive", 1.0)),  # unknown duration: seconds
        (ev(1, dwell=1, duration=0), ("skip", 0.25)),
    ],
)
def test_label_event(event: InteractionEvent, expected: tuple[str, float] | None) -> None:
    assert label_event(event, CFG) == expected
    assert is_positive(event, CFG) == (expected is not None and expected[0] == "positive")


def test_dismiss_can_be_excluded() -> None:
    assert (
        label_event(ev(1, dwell=10, dismissed=True), LabelConfig(dismiss_is_dislike=False)) is None
    )


def test_bad_label_config_fails_fast() -> None:
    with pytest.raises(ValueError, match="skip_ratio"):
        LabelConfig(skip_ratio=0.9, long_dwell_ratio=0.5)
    with pytest.raises(ValueError, match="weights"):
        LabelConfig(skip_weight=-1)


def test_dwell_buckets_are_ordered_and_in_range() -> None:
    ratios = [0.0, 0.05, 0.2, 0.3, 0.6, 0.9, 1.0, 2.0]
    buckets = [dwell_bucket(ev(1, dwell=30 * r), CFG) for r in ratios]
    assert buckets == [0, 0, 1, 2, 3, 4, 5, 5]
    assert max(buckets) == NUM_DWELL_BUCKETS - 1


def test_gap_buckets() -> None:
    assert gap_bucket(None) == 0
    assert [gap_bucket(g) for g in (0, 59, 599, 3599, 86_399, 604_799, 1e9)] == list(
        range(1, NUM_GAP_BUCKETS)
    )


def test_step_builds_history_before_the_event() -> None:
    history: tuple[HistoryItem, ...] = ()
    history, first = step(ev(1), history, CFG)
    assert first is not None and first.history == ()
    history, second = step(ev(2, dwell=30, disliked=True), history, CFG)
    assert second == TrainingExample(
        event_id="e2",
        user_id="u",
        timestamp=1020.0,
        history=(HistoryItem("i1", "c1", "k", False, 4, 0, 1010.0),),
        label_item_id="i2",
        label_creator_id="c0",
        label_cluster_id="k",
        label_kind="dislike",
        label_weight=1.0,
    )
    assert history[-1] == HistoryItem("i2", "c0", "k", True, 5, 2, 1020.0)


def test_history_is_truncated_and_unlabelled_events_still_enter() -> None:
    events = [ev(i, dwell=10) for i in range(1, 6)]  # all unlabelled
    assert events_to_examples(events, CFG) == []
    final = user_histories(events, CFG)["u"]
    assert [h.item_id for h in final] == ["i3", "i4", "i5"]


def test_offline_windowing_orders_by_time_and_drops_duplicate_ids() -> None:
    events = [ev(3), ev(1), ev(2), ev(2), ev(4, user="v")]
    examples = events_to_examples(events, CFG)
    assert [(x.user_id, x.event_id) for x in examples] == [
        ("u", "e1"),
        ("u", "e2"),
        ("u", "e3"),
        ("v", "e4"),
    ]
    assert [h.item_id for h in examples[2].history] == ["i1", "i2"]
    assert all(TrainingExample.from_json(x.to_json()) == x for x in examples)
