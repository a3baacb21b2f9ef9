"""Labelling at its exact edges: thresholds are half-open as documented, the config
says what is wrong, and dwell buckets change exactly at their edges.

Written against the mutants mutation testing found alive (docs/testing.md): each
``<`` / ``<=`` choice and each message is pinned by one case here.
"""

from __future__ import annotations

import re

import pytest

from recoil.core.events import InteractionEvent
from recoil.core.labels import (
    LabelConfig,
    dwell_bucket,
    gap_bucket,
    is_long_dwell,
    is_skip,
    label_event,
)

CFG = LabelConfig()  # skip < 10% or < 2 s; long >= 80% or >= 20 s


def ev(dwell: float, duration: float = 0.0) -> InteractionEvent:
    """duration 0 means unknown: dwell is then judged in seconds."""
    return InteractionEvent(
        event_id="e", user_id="u", item_id="i", creator_id="c", timestamp=1.0,
        surface="home", dwell_seconds=dwell, item_duration_seconds=duration,
        liked=False, disliked=False, dismissed=False,
    )  # fmt: skip


def _exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"skip_ratio": 0.5, "long_dwell_ratio": 0.5}, "need 0 <= skip_ratio < long_dwell_ratio"),
        ({"skip_ratio": -0.1}, "need 0 <= skip_ratio < long_dwell_ratio"),
        ({"skip_seconds": 20.0, "long_dwell_seconds": 20.0},
         "need 0 <= skip_seconds < long_dwell_seconds"),
        ({"skip_seconds": -1.0}, "need 0 <= skip_seconds < long_dwell_seconds"),
        ({"skip_weight": -0.01}, "label weights must be >= 0"),
        ({"dislike_weight": -1.0}, "label weights must be >= 0"),
        ({"history_length": 0}, "history_length must be >= 1"),
    ],
)  # fmt: skip
def test_bad_config_says_exactly_what_is_wrong(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=_exactly(message)):
        LabelConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"skip_ratio": 0.0},  # no skips by ratio
        {"skip_seconds": 0.0},
        {"skip_seconds": 0.5},  # a fraction of a second is a valid threshold
        {"skip_ratio": 0.79, "long_dwell_ratio": 0.8},
        {"skip_seconds": 19.9, "long_dwell_seconds": 20.0},
        {"skip_weight": 0.0, "positive_weight": 0.0, "like_weight": 0.0, "dislike_weight": 0.0},
        {"history_length": 1},
    ],
)
def test_edge_configs_are_valid(fields: dict[str, float]) -> None:
    LabelConfig(**fields)  # type: ignore[arg-type]


def test_skip_is_strictly_below_its_threshold() -> None:
    assert is_skip(ev(1.99), CFG) and not is_skip(ev(2.0), CFG)  # seconds
    assert is_skip(ev(0.99, 10.0), CFG) and not is_skip(ev(1.0, 10.0), CFG)  # 10% of 10 s


def test_long_dwell_starts_at_its_threshold() -> None:
    assert is_long_dwell(ev(20.0), CFG) and not is_long_dwell(ev(19.99), CFG)  # seconds
    assert is_long_dwell(ev(8.0, 10.0), CFG) and not is_long_dwell(ev(7.99, 10.0), CFG)  # 80%


def test_known_duration_judges_by_ratio_not_seconds() -> None:
    # 25 s is a long dwell in seconds, but only 25% of a 100 s item; 1.5 s is a skip in
    # seconds, but 75% of a 2 s item
    assert not is_long_dwell(ev(25.0, 100.0), CFG)
    assert label_event(ev(25.0, 100.0), CFG) is None
    assert not is_skip(ev(1.5, 2.0), CFG)
    assert label_event(ev(1.5, 2.0), CFG) is None


@pytest.mark.parametrize(
    ("dwell", "bucket"),
    [(2.0, 1), (4.99, 1), (5.0, 2), (9.99, 2), (10.0, 3), (19.99, 3), (20.0, 4),
     (39.99, 4), (40.0, 5), (400.0, 5), (1.99, 0)],
)  # fmt: skip
def test_dwell_bucket_in_seconds_changes_exactly_at_each_edge(dwell: float, bucket: int) -> None:
    assert dwell_bucket(ev(dwell), CFG) == bucket


@pytest.mark.parametrize(
    ("dwell", "bucket"),
    [(0.99, 0), (1.0, 1), (2.49, 1), (2.5, 2), (5.0, 3), (7.99, 3), (8.0, 4), (10.0, 5),
     (30.0, 5)],
)  # fmt: skip
def test_dwell_bucket_by_ratio_changes_exactly_at_each_edge(dwell: float, bucket: int) -> None:
    assert dwell_bucket(ev(dwell, 10.0), CFG) == bucket


@pytest.mark.parametrize(
    ("gap", "bucket"),
    [(None, 0), (float("nan"), 0), (-5.0, 1), (0.0, 1), (9.99, 1), (10.0, 2), (60.0, 3),
     (600.0, 4), (3600.0, 5), (86_400.0, 6), (604_799.0, 6), (604_800.0, 7), (1e9, 7)],
)  # fmt: skip
def test_gap_bucket_edges(gap: float | None, bucket: int) -> None:
    assert gap_bucket(gap) == bucket
