"""Replay pacing: due times scaled by speed, never reordering the file."""

from __future__ import annotations

import pytest

from streams.replay import Pacer, send_offsets


def test_speed_scales_inter_event_time() -> None:
    assert send_offsets([100.0, 101.0, 103.0, 103.0], speed=2.0) == [0.0, 0.5, 1.5, 1.5]


def test_events_late_in_time_but_early_in_the_file_go_at_once() -> None:
    assert send_offsets([100.0, 110.0, 105.0, 112.0], speed=1.0) == [0.0, 10.0, 10.0, 12.0]


def test_as_fast_as_possible_is_always_due() -> None:
    assert send_offsets([5.0, 1e9, 3.0], speed=None) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_speed_must_be_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be > 0"):
        Pacer(speed)
