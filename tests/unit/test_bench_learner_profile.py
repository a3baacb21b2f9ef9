"""``bench.learner_profile`` counts the examples an arm trains, apart from those it reads."""

from __future__ import annotations

import orjson
import pytest

from bench.learner_profile import trained_by_arm


def _example(kind: str) -> bytes:
    return orjson.dumps({"event_id": "e", "label_kind": kind, "history": []})


@pytest.mark.parametrize(
    ("arm", "expected"),
    [
        ("no_signal", 3),  # positives only
        ("feature_only", 3),
        ("feature_and_labels", 5),  # and the dislikes
        ("feature_labels_skips", 12),  # and the skips
    ],
)
def test_an_arm_trains_the_labels_it_takes(arm: str, expected: int) -> None:
    values = [_example("positive")] * 3 + [_example("dislike")] * 2 + [_example("skip")] * 7
    assert trained_by_arm(values, arm) == expected
