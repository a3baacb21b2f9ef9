"""A/B assignment by a stable hash of the user id, and the per-arm rates with intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.ab import (
    ArmTally,
    assign_arm,
    parse_split,
    relative_change_ci,
    repeat_within,
    summarise,
    user_bucket,
)

ARMS = ("feature_and_labels", "no_signal")


def test_parse_split_normalises_and_defaults_to_equal_shares() -> None:
    assert parse_split("", ARMS) == (("feature_and_labels", 0.5), ("no_signal", 0.5))
    assert parse_split("feature_and_labels=3,no_signal=1", ARMS) == (
        ("feature_and_labels", 0.75),
        ("no_signal", 0.25),
    )
    assert parse_split("no_signal=1", ARMS) == (("feature_and_labels", 0.0), ("no_signal", 1.0))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("feature_and_labels", "expected ARM=SHARE"),
        ("feature_and_labels=-1", "expected ARM=SHARE"),
        ("feature_and_labels=nan", "expected ARM=SHARE"),
        ("other=1", r"do not run: \['other'\]"),
        ("feature_and_labels=0,no_signal=0", "add up to 0"),
    ],
)
def test_parse_split_refuses(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_split(spec, ARMS)


def test_assignment_is_stable_and_follows_the_shares() -> None:
    split = parse_split("feature_and_labels=0.3,no_signal=0.7", ARMS)
    users = [f"u{i}" for i in range(20_000)]
    first = [assign_arm(u, split) for u in users]
    assert first == [assign_arm(u, split) for u in users]  # a pure function of the id
    share = first.count("feature_and_labels") / len(users)
    assert share == pytest.approx(0.3, abs=0.015)
    # The bucket is SHA-256 of salt and id: fixed across processes and Python versions.
    assert user_bucket("u0", "recoil-ab") == pytest.approx(user_bucket("u0", "recoil-ab"))
    assert 0.0 <= user_bucket("u0") < 1.0
    other = [assign_arm(u, split, salt="another") for u in users]
    assert other != first  # another salt reshuffles users


def test_a_zero_share_arm_gets_no_users() -> None:
    split = parse_split("feature_and_labels=1,no_signal=0", ARMS)
    assert {assign_arm(f"u{i}", split) for i in range(500)} == {"feature_and_labels"}


def test_repeat_within_counts_the_window_inclusively() -> None:
    last = {"c1": 10}
    assert repeat_within(last, "c1", 60, 50)
    assert not repeat_within(last, "c1", 61, 50)
    assert not repeat_within(last, "c2", 11, 50)


def _tally(users: dict[str, tuple[int, int, int, int]]) -> ArmTally:
    tally = ArmTally()
    for user, (impressions, dislikes, repeats, positives) in users.items():
        for i in range(impressions):
            tally.record(user, i < dislikes, i < repeats, i >= impressions - positives)
    return tally


def test_rates_pool_impressions_and_intervals_resample_users() -> None:
    tally = _tally({"a": (100, 4, 1, 40), "b": (50, 0, 0, 30), "c": (50, 2, 0, 10)})
    assert tally.impressions == 200
    assert tally.rate("dislike") == 6 / 200
    assert tally.rate("repeat_dislike") == 1 / 200
    assert tally.rate("engagement") == 80 / 200
    low, high = tally.rate_ci("dislike", np.random.default_rng(0), resamples=2000)
    assert 0.0 <= low < 6 / 200 < high <= 4 / 100  # bounded by the extreme users' rates


def test_relative_change_and_its_interval() -> None:
    treated = _tally({f"t{i}": (100, 1, 0, 50) for i in range(20)})
    control = _tally({f"c{i}": (100, 2, 0, 50) for i in range(20)})
    change, (low, high) = relative_change_ci(treated, control, "dislike", np.random.default_rng(0))
    assert change == pytest.approx(-0.5)
    assert low == high == pytest.approx(-0.5)  # every user alike: no spread
    change, (low, high) = relative_change_ci(
        treated, control, "engagement", np.random.default_rng(0)
    )
    assert change == low == high == 0.0


def test_summarise_gives_changes_against_the_baseline_only() -> None:
    tallies = {
        "feature_and_labels": _tally({"u1": (10, 1, 0, 5)}),
        "no_signal": _tally({"u2": (10, 2, 1, 5)}),
    }
    out = summarise(tallies, baseline="no_signal")
    assert [s.arm for s in out] == ["feature_and_labels", "no_signal"]
    assert out[1].changes == {}
    assert out[0].changes["dislike"][0] == pytest.approx(-0.5)
    assert out[0].changes["repeat_dislike"][0] == -1.0
    assert out[0].to_dict()["rates"]["dislike"][0] == pytest.approx(0.1)


def test_an_arm_without_impressions_has_nan_rates() -> None:
    out = summarise({"a": ArmTally(), "b": _tally({"u": (5, 1, 0, 1)})}, baseline="b")
    value, (low, high) = out[0].rates["dislike"]
    assert math.isnan(value) and math.isnan(low) and math.isnan(high)
    assert math.isnan(out[0].changes["dislike"][0])
