"""The learner's fast decoder gives exactly what ``decode_example`` gives, good or bad,
and shares the history items a user's examples have in common."""

from __future__ import annotations

import pytest

from learner.example_check import ExampleDecoder, Skipped, decode_example
from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig
from recoil.core.records import TrainingExample
from recoil.core.windows import events_to_examples
from tests.unit.test_learner_example_check import BAD, GOOD


def _examples(users: int = 3, per_user: int = 40) -> list[TrainingExample]:
    events = [
        InteractionEvent(
            event_id=f"u{u}-{n}",
            user_id=f"u{u}",
            item_id=f"i{(n * 7 + u) % 23}",
            creator_id=f"c{n % 5}",
            cluster_id=None if n % 4 == 0 else f"k{n % 3}",
            timestamp=1_700_000_000.0 + 60 * n + u,
            surface="home",
            dwell_seconds=float(n % 31),
            item_duration_seconds=30.0,
            liked=n % 9 == 0,
            disliked=n % 11 == 0,
            dismissed=False,
        )
        for u in range(users)
        for n in range(per_user)
    ]
    return events_to_examples(events, LabelConfig(history_length=10))


def test_worker_examples_decode_equal_to_the_reference() -> None:
    decoder = ExampleDecoder(max_bytes=100_000, max_history=50)
    examples = _examples()
    assert examples
    for example in examples:
        value = example.to_json()
        assert decoder(value) == decode_example(value, 100_000, 50) == example


def test_a_users_consecutive_examples_share_their_history_items() -> None:
    decoder = ExampleDecoder(max_bytes=100_000, max_history=50)
    first, second = (decoder(e.to_json()) for e in _examples(users=1, per_user=40)[10:12])
    assert isinstance(first, TrainingExample) and isinstance(second, TrainingExample)
    shared = set(map(id, first.history)) & set(map(id, second.history))
    assert len(shared) >= len(first.history) - 1


@pytest.mark.parametrize(("value", "reason", "fragment"), BAD)
def test_bad_records_are_skipped_exactly_as_the_reference_does(
    value: bytes | None, reason: str, fragment: str
) -> None:
    decoder = ExampleDecoder(max_bytes=10_000, max_history=10)
    decoder(GOOD.to_json())  # a cached item must not let a bad one through
    result = decoder(value)
    assert isinstance(result, Skipped)
    assert result == decode_example(value, max_bytes=10_000, max_history=10)
    assert result.reason == reason and fragment in result.detail


def test_the_cache_is_bounded() -> None:
    decoder = ExampleDecoder(max_bytes=100_000, max_history=50, cache_items=16)
    for example in _examples():
        assert decoder(example.to_json()) == example
    assert len(decoder._items) <= 16
