"""Two rounds of forked tasks: the second inherits what the first handed over."""

from __future__ import annotations

import os

import pytest

from simulator.parallel import kept_model, map_arms_then


@pytest.mark.parametrize("workers", [1, 2])
def test_the_second_round_reads_what_the_first_handed_over(workers: int) -> None:
    handed: dict[str, int] = {}

    def task(key: str) -> tuple[int, int]:
        if key.startswith("base"):
            return len(key), os.getpid()
        return handed["start"] + len(key), os.getpid()  # a second-round task

    def hand_over(done: dict[str, tuple[int, int]]) -> None:
        assert set(done) == {"base", "base2"}  # the whole first round, before the second
        handed["start"] = 100 * done["base2"][0]

    results = map_arms_then(task, ["base", "base2"], ["s", "stage"], workers, hand_over)
    assert {key: value for key, (value, _) in results.items()} == {
        "base": 4, "base2": 5, "s": 501, "stage": 505,
    }  # fmt: skip
    in_parent = {pid for _, pid in results.values()} == {os.getpid()}
    assert in_parent == (workers == 1)  # two workers forked after the hand-over


def test_nothing_is_handed_over_without_a_second_round() -> None:
    def hand_over(done: dict[str, int]) -> None:
        raise AssertionError("no second round, nothing to hand over")

    assert map_arms_then(len, ["ab", "abc"], [], 1, hand_over) == {"ab": 2, "abc": 3}


def test_a_base_that_kept_no_model_is_said_at_once() -> None:
    assert kept_model("model") == "model"
    with pytest.raises(RuntimeError, match="kept no model"):
        kept_model(None)
