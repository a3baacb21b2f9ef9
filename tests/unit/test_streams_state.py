"""The per-user stream rule: exact examples, dedupe, out-of-order, state encoding."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig
from recoil.core.records import HistoryItem, TrainingExample
from recoil.core.windows import events_to_examples
from streams.state import UserState, advance, label_json, replay_in_arrival_order, with_history

LABELS = LabelConfig(history_length=3)


def ev(
    n: int,
    ts: float,
    dwell: float = 25.0,
    *,
    user: str = "u1",
    liked: bool = False,
    disliked: bool = False,
    event_id: str | None = None,
) -> InteractionEvent:
    return InteractionEvent(
        event_id=event_id or f"e{n}",
        user_id=user,
        item_id=f"i{n}",
        creator_id=f"c{n % 2}",
        cluster_id=f"k{n % 3}",
        timestamp=ts,
        surface="home",
        dwell_seconds=dwell,
        item_duration_seconds=30.0,
        liked=liked,
        disliked=disliked,
        dismissed=False,
    )


def test_exact_examples_for_a_hand_built_sequence() -> None:
    events = [
        ev(1, 1000.0, dwell=29.0),  # positive (29/30 >= 0.8), empty history
        ev(2, 1005.0, dwell=12.0),  # no label (0.4), enters history
        ev(3, 1100.0, dwell=1.0),  # skip (1/30 < 0.1), weight 0.25
        ev(4, 1100.0, dwell=30.0, disliked=True),  # dislike, same timestamp: in order
        ev(5, 5000.0, dwell=15.0, liked=True),  # like; history keeps the newest 3
    ]
    examples, states = replay_in_arrival_order(events, LABELS, dedupe_window=10)
    h1 = HistoryItem("i1", "c1", "k1", False, 4, 0, 1000.0)  # dwell 29/30 -> bucket 4
    h2 = HistoryItem("i2", "c0", "k2", False, 2, 1, 1005.0)  # 0.4 -> bucket 2; gap 5 s -> 1
    h3 = HistoryItem("i3", "c1", "k0", False, 0, 3, 1100.0)  # skip -> 0; gap 95 s -> 3
    h4 = HistoryItem("i4", "c0", "k1", True, 5, 1, 1100.0)  # full watch -> 5; gap 0 -> 1
    h5 = HistoryItem("i5", "c1", "k2", False, 3, 5, 5000.0)  # 0.5 -> 3; gap 3900 s -> 5
    assert [(x.event_id, x.label_kind, x.label_weight) for x in examples] == [
        ("e1", "positive", 1.0),
        ("e3", "skip", 0.25),
        ("e4", "dislike", 1.0),
        ("e5", "positive", 1.0),
    ]
    assert [x.history for x in examples] == [(), (h1, h2), (h1, h2, h3), (h2, h3, h4)]
    assert examples[-1] == TrainingExample(
        "e5", "u1", 5000.0, (h2, h3, h4), "i5", "c1", "k2", "positive", 1.0
    )
    assert states["u1"].history == (h3, h4, h5)
    assert states["u1"].recent_event_ids == ("e1", "e2", "e3", "e4", "e5")


def test_duplicate_event_id_yields_nothing_and_keeps_state() -> None:
    state = advance(UserState(), ev(1, 1000.0, dwell=29.0), LABELS, 10).state
    again = advance(state, ev(1, 1000.0, dwell=29.0), LABELS, 10)
    assert (again.outcome, again.example, again.state) == ("duplicate", None, state)
    retried_later = advance(state, ev(9, 2000.0, event_id="e1"), LABELS, 10)
    assert retried_later.outcome == "duplicate"  # same id, even with other content


def test_dedupe_window_forgets_the_oldest_ids() -> None:
    state = UserState()
    for n in range(1, 5):
        state = advance(state, ev(n, 1000.0 + n), LABELS, dedupe_window=2).state
    assert state.recent_event_ids == ("e3", "e4")
    # e1 left the window; it is now older than the history, so it is out of order.
    assert advance(state, ev(1, 1001.0), LABELS, 2).outcome == "out_of_order"
    assert advance(state, ev(4, 1004.0), LABELS, 2).outcome == "duplicate"


def test_out_of_order_event_is_dropped_but_ties_are_not() -> None:
    state = advance(UserState(), ev(1, 1000.0), LABELS, 10).state
    late = advance(state, ev(2, 999.999, dwell=29.0), LABELS, 10)
    assert (late.outcome, late.example, late.state) == ("out_of_order", None, state)
    tie = advance(state, ev(3, 1000.0, dwell=29.0), LABELS, 10)
    assert tie.outcome == "positive"
    assert [h.item_id for h in tie.state.history] == ["i1", "i3"]


def test_outcome_none_for_an_unlabelled_event() -> None:
    result = advance(UserState(), ev(1, 1000.0, dwell=12.0), LABELS, 10)
    assert (result.outcome, result.example, len(result.state.history)) == ("none", None, 1)


def test_state_bytes_round_trip_exactly() -> None:
    _, states = replay_in_arrival_order(
        [ev(n, 1000.0 + 7 * n, dwell=n % 31) for n in range(8)], LABELS, 5
    )
    state = states["u1"]
    raw = state.to_bytes()
    assert json.loads(raw) == {
        "v": 1,
        "history": [h.to_row() for h in state.history],
        "ids": ["e3", "e4", "e5", "e6", "e7"],
    }
    back = UserState.from_bytes(raw)
    assert back == state and back.to_bytes() == raw
    # A state built without the cached JSON encodes identically.
    assert UserState(state.history, state.recent_event_ids).to_bytes() == raw


@pytest.mark.parametrize(
    "raw",
    [b'{"v":2,"history":[],"ids":[]}', b"[]", b'{"history":[]}'],
)
def test_unknown_state_layout_is_rejected(raw: bytes) -> None:
    with pytest.raises(ValueError, match="unknown user state layout"):
        UserState.from_bytes(raw)


@pytest.mark.parametrize(
    "event_id",
    ["plain", 'a"history":[]b', 'quote"', "ünïcode ✓", "back\\slash", "tab\tnl\n"],
)
def test_example_json_equals_to_json(event_id: str) -> None:
    state = advance(UserState(), ev(1, 1000.0), LABELS, 10).state
    result = advance(state, ev(2, 1001.0, dwell=29.0, event_id=event_id), LABELS, 10)
    assert result.example is not None
    assert result.example_json == result.example.to_json()
    assert with_history(label_json(result.example), state.rows_json()) == result.example.to_json()
    assert result.example_label == result.example.label_json()  # the record's header
    label = TrainingExample.from_json(result.example.label_json())
    assert label == dataclasses.replace(result.example, history=())


def test_matches_offline_windowing_for_in_order_streams() -> None:
    rng = random.Random(7)
    labels = LabelConfig(history_length=5)
    events = []
    clock = {u: 1_000.0 for u in ("a", "b", "c", "d")}
    for n in range(600):
        user = rng.choice(sorted(clock))
        clock[user] += rng.choice([0.0, 1.0, 30.0, 4000.0])
        events.append(
            InteractionEvent(
                event_id=f"e{n:04d}",
                user_id=user,
                item_id=f"i{rng.randrange(40)}",
                creator_id=f"c{rng.randrange(6)}",
                cluster_id=rng.choice([None, "k1", "k2"]),
                timestamp=clock[user],
                surface="home",
                dwell_seconds=rng.uniform(0, 40),
                item_duration_seconds=rng.choice([0.0, 30.0]),
                liked=rng.random() < 0.1,
                disliked=rng.random() < 0.05,
                dismissed=rng.random() < 0.02,
            )
        )
    streamed, _ = replay_in_arrival_order(events, labels, dedupe_window=1000)
    offline = events_to_examples(events, labels)
    key = lambda x: x.event_id  # noqa: E731
    assert sorted(streamed, key=key) == sorted(offline, key=key)
    assert len(streamed) > 300
