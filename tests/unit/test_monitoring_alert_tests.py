"""Every alert has a promtool case in which it fires, and one in which it stays quiet.

``test_monitoring_rules`` runs ``promtool test rules`` over monitoring/rules/tests;
this checks that those files actually cover each alert of alerts.yml, so a new
alert (or a deleted case) cannot go untested.
"""

from __future__ import annotations

from typing import Any

import yaml

from monitoring import rules


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in sorted((rules.RULES_DIR / "tests").glob("*.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    loaded = yaml.safe_load(rules.ALERTS_FILE.read_text())
    alerts = {r["alert"] for g in loaded["groups"] for r in g["rules"] if "alert" in r}
    cases = _cases()
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alerts - fires == set(), "alerts with no promtool case where they fire"
    assert alerts - quiet == set(), "alerts with no promtool case where they stay quiet"
    assert {"RecoilStreamLagGrowing", "RecoilLearnerLagGrowing", "RecoilLearnerLossNotFinite",
            "RecoilTargetDown"} <= fires  # fmt: skip
