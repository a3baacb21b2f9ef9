"""The demo's alert watch: changes of state from Prometheus' /api/v1/alerts, and episodes."""

from __future__ import annotations

from typing import Any

from recoil.commands._demo_prometheus import Episode, alert_changes, alert_key, describe, episodes


def _alert(state: str, arm: str = "feature_and_labels", similarity: str = "cluster") -> Any:
    # The shape /api/v1/alerts answers (Prometheus 2.42).
    return {
        "labels": {"alertname": "RecoilResponsivenessRegressed", "arm": arm,
                   "similarity": similarity, "severity": "ticket"},
        "annotations": {"summary": "..."},
        "state": state,
        "activeAt": "2026-11-30T13:10:00Z",
        "value": "1.7e-01",
    }  # fmt: skip


def test_each_change_of_state_is_reported_once() -> None:
    key = alert_key(_alert("pending"))
    assert describe(key) == (
        "RecoilResponsivenessRegressed arm=feature_and_labels similarity=cluster"
    )
    state, changes = alert_changes({}, [_alert("pending")])
    assert changes == [(key, "inactive", "pending")]
    state, changes = alert_changes(state, [_alert("pending")])
    assert changes == []
    state, changes = alert_changes(state, [_alert("firing"), _alert("pending", "no_signal")])
    other = alert_key(_alert("pending", "no_signal"))
    assert changes == [(key, "pending", "firing"), (other, "inactive", "pending")]
    state, changes = alert_changes(state, [])  # resolved: absent from the answer
    assert sorted(changes) == [(key, "firing", "inactive"), (other, "pending", "inactive")]
    assert state == {}


def test_episodes_follow_the_changes_and_stay_open_at_the_end() -> None:
    a, b = alert_key(_alert("pending")), alert_key(_alert("pending", similarity="creator"))
    found = episodes([
        (400.0, a, "inactive", "pending"),
        (420.0, b, "inactive", "pending"),
        (435.0, b, "pending", "inactive"),
        (520.0, a, "pending", "firing"),
    ])  # fmt: skip
    assert found == [
        Episode(a, "pending", 400.0, 520.0),
        Episode(b, "pending", 420.0, 435.0),
        Episode(a, "firing", 520.0, None),
    ]


def test_the_switch_counts_from_the_end_of_the_warm_up() -> None:
    from recoil.commands.demo import shifted_switch

    assert shifted_switch("feature_and_labels=no_signal@240", 300.0) == (
        "feature_and_labels=no_signal@540"
    )
    assert shifted_switch("feature_and_labels=no_signal@240", 0.0) == (
        "feature_and_labels=no_signal@240"
    )
    assert shifted_switch("", 300.0) == ""
