"""The agent's per-record decision (streams.decision): exact answers, no Kafka, no Faust."""

from __future__ import annotations

import random

import pytest

from recoil.core.events import Invalid
from recoil.core.records import HistoryItem, TrainingExample
from streams.decision import (
    Advance,
    Drop,
    ToDeadLetter,
    check_key,
    check_record,
    decide,
    failed,
)
from streams.state import UserState, replay_in_arrival_order
from tests.unit.test_streams_state import LABELS, ev  # LabelConfig(history_length=3)

H1 = HistoryItem("i1", "c1", "k1", False, 4, 0, 1000.0)  # dwell 29/30 -> bucket 4
H2 = HistoryItem("i2", "c0", "k2", False, 2, 1, 1005.0)  # 12/30 -> bucket 2; gap 5 s -> 1
AFTER_E1 = UserState(history=(H1,), recent_event_ids=("e1",))


def test_an_invalid_record_is_dead_lettered_with_its_reason() -> None:
    problem = Invalid("invalid_json", "not JSON")
    decision = decide(problem, AFTER_E1, LABELS, 10)
    assert decision == ToDeadLetter(problem)
    assert decision.outcome == "invalid"
    assert decision.error is None


def test_the_key_must_be_the_events_user_id() -> None:
    event = ev(1, 1000.0)
    assert check_record(b"u1", event) is event
    assert check_record(b"u2", event) == Invalid(
        "wrong_key", "record key b'u2' is not the event's user_id 'u1'"
    )
    assert check_record(None, event) == Invalid(
        "wrong_key", "record has no key; key events by user_id"
    )
    assert check_key(b"u" * 100, event) == Invalid(
        "wrong_key", f"record key {b'u' * 64!r} is not the event's user_id 'u1'"
    )
    undecodable = Invalid("invalid_json", "x")
    assert check_record(b"u1", undecodable) is undecodable


def test_a_labelled_first_event_advances_a_new_user_and_sends_its_example() -> None:
    decision = decide(ev(1, 1000.0, dwell=29.0), None, LABELS, 10)
    value = (
        b'{"event_id":"e1","user_id":"u1","timestamp":1000.0,"history":[],'
        b'"label_item_id":"i1","label_creator_id":"c1","label_cluster_id":"k1",'
        b'"label_kind":"positive","label_weight":1.0}'
    )
    assert decision == Advance(
        outcome="positive",
        user_id="u1",
        state=AFTER_E1,
        example=TrainingExample("e1", "u1", 1000.0, (), "i1", "c1", "k1", "positive", 1.0),
        example_json=value,
        example_label=value,  # an empty history: the label header is the whole example
    )
    assert isinstance(decision, Advance)
    assert decision.state.to_bytes() == (
        b'{"v":1,"history":[["i1","c1","k1",0,4,0,1000.0]],"ids":["e1"]}'
    )


def test_an_unlabelled_event_enters_the_history_without_an_example() -> None:
    decision = decide(ev(2, 1005.0, dwell=12.0), AFTER_E1, LABELS, 10)
    assert decision == Advance(
        "none", "u1", UserState(history=(H1, H2), recent_event_ids=("e1", "e2"))
    )


def test_a_repeated_event_id_is_a_duplicate_whatever_it_carries() -> None:
    assert decide(ev(1, 1000.0, dwell=29.0), AFTER_E1, LABELS, 10) == Drop("duplicate")
    assert decide(ev(7, 9000.0, event_id="e1"), AFTER_E1, LABELS, 10) == Drop("duplicate")


def test_the_dedupe_window_bounds_what_counts_as_a_duplicate() -> None:
    state = decide(ev(2, 1005.0), AFTER_E1, LABELS, 1)
    assert isinstance(state, Advance) and state.state.recent_event_ids == ("e2",)
    again = decide(ev(1, 2000.0, dwell=12.0), state.state, LABELS, 1)  # e1 left the window
    assert isinstance(again, Advance) and again.outcome == "none"
    assert decide(ev(2, 2000.0), state.state, LABELS, 1) == Drop("duplicate")


def test_an_older_event_is_dropped_out_of_order_and_an_equal_time_is_in_order() -> None:
    assert decide(ev(2, 999.0), AFTER_E1, LABELS, 10) == Drop("out_of_order")
    same_time = decide(ev(2, 1000.0, dwell=12.0), AFTER_E1, LABELS, 10)
    assert isinstance(same_time, Advance) and same_time.outcome == "none"


def test_the_tables_bytes_decide_as_the_state_they_encode() -> None:
    raw = AFTER_E1.to_bytes()
    assert decide(ev(2, 1005.0, dwell=12.0), raw, LABELS, 10) == decide(
        ev(2, 1005.0, dwell=12.0), AFTER_E1, LABELS, 10
    )
    assert decide(ev(1, 1000.0), raw, LABELS, 10) == Drop("duplicate")
    assert decide(ev(2, 999.0), raw, LABELS, 10) == Drop("out_of_order")


def test_a_corrupt_stored_state_parks_the_event_as_a_processing_error() -> None:
    decision = decide(ev(2, 1005.0), b'{"v":0}', LABELS, 10)
    assert decision == ToDeadLetter(
        Invalid("processing_error", "ValueError: unknown user state layout: b'{\"v\":0}'")
    )
    assert isinstance(decision, ToDeadLetter) and isinstance(decision.error, ValueError)
    assert decide(ev(2, 1005.0), b"nope", LABELS, 10) == ToDeadLetter(
        Invalid("processing_error", "JSONDecodeError: Expecting value: line 1 column 1 (char 0)")
    )


def test_a_failure_of_the_workers_own_code_names_the_exception() -> None:
    error = RuntimeError("boom")
    decision = failed(error)
    assert decision == ToDeadLetter(Invalid("processing_error", "RuntimeError: boom"))
    assert decision.error is error
    assert decision.outcome == "invalid"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deciding_record_by_record_is_the_stream_rule(seed: int) -> None:
    """Folding decisions over shuffled events with repeats equals streams.state's replay."""
    rng = random.Random(seed)
    events = [
        ev(n, 1000.0 + rng.choice([0, 5, 60, 3600]) * n, dwell=rng.choice([0.5, 12.0, 29.0]),
           user=rng.choice(["u1", "u2", "u3"]))
        for n in range(40)
    ]  # fmt: skip
    events += rng.sample(events, 10)  # redeliveries
    rng.shuffle(events)  # some arrive late
    states: dict[str, UserState] = {}
    examples: list[TrainingExample] = []
    outcomes: list[str] = []
    for event in events:
        decision = decide(event, states.get(event.user_id), LABELS, 5)
        outcomes.append(decision.outcome)
        if isinstance(decision, Advance):
            states[decision.user_id] = decision.state
            if decision.example is not None:
                assert decision.example_json == decision.example.to_json()
                examples.append(decision.example)
    expected_examples, expected_states = replay_in_arrival_order(events, LABELS, 5)
    assert examples == expected_examples
    assert states == expected_states
    assert {"duplicate", "out_of_order", "none"} <= set(outcomes)
