"""Rule files and scrape config: generated equals committed, promtool accepts and tests them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring import expressions, rules, scrape
from monitoring.catalogue import CATALOGUE

RULE_TESTS = sorted((rules.RULES_DIR / "tests").glob("*.yml"))


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_committed_rule_files_are_generated() -> None:
    assert rules.RECORDING_FILE.read_text() == rules.to_yaml(rules.recording_groups()), (
        "run: python -m monitoring.rules"
    )
    assert rules.ALERTS_FILE.read_text() == rules.to_yaml(rules.alert_groups())


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(rules.RECORDING_FILE), str(rules.ALERTS_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 18 rules found" in done.stdout
    assert f"SUCCESS: {len(rules.all_recordings())} rules found" in done.stdout


def test_promtool_rule_unit_tests() -> None:
    """Responsiveness regressed (both export styles), snapshot stale, and more."""
    names = {p.name for p in RULE_TESTS}
    assert {"responsiveness_test.yml", "learner_test.yml", "streams_restarts_test.yml",
            "learner_skips_test.yml", "serving_snapshots_test.yml"} <= names  # fmt: skip
    done = promtool("test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_is_annotated_and_waits() -> None:
    loaded = yaml.safe_load(rules.ALERTS_FILE.read_text())
    alerts = [r for g in loaded["groups"] for r in g["rules"]]
    wanted = {
        "RecoilResponsivenessRegressed",
        "RecoilSnapshotStale",
        "RecoilStreamLagGrowing",
        "RecoilDLQRateHigh",
        "RecoilLearnerStalled",
        "RecoilStreamAgentSilent",
        "RecoilServingErrorRatio",
        "RecoilStreamWorkerRestarting",
        "RecoilStreamCrashLoop",
        "RecoilStreamRecordSkipped",
        "RecoilStreamHeaderKeysNotUtf8",
        "RecoilLearnerSkippingExamples",
        "RecoilSnapshotPublishFailing",
        "RecoilServingSnapshotRefused",
    }
    assert wanted <= {a["alert"] for a in alerts}
    for alert in alerts:
        assert alert["for"].endswith(("s", "m")), alert["alert"]
        assert alert["labels"]["severity"] in ("page", "ticket")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
    assert all(a.signals for a in rules.all_alerts())


def test_expressions_read_only_catalogued_metrics_and_recording_rules() -> None:
    known = expressions.known_series()
    for expression in expressions.all_expressions():
        unknown = expressions.series_names(expression.expr) - known
        assert not unknown, f"{expression.source} reads {unknown}"
    for alert in rules.all_alerts():
        assert not expressions.series_names(alert.expr) - known, alert.alert


def test_every_catalogued_metric_is_read_by_a_dashboard_or_rule() -> None:
    read: set[str] = set()
    for expression in expressions.all_expressions():
        read |= expressions.series_names(expression.expr)
    for metric in CATALOGUE:
        assert {metric.name, f"{metric.name}_bucket"} & read, f"nothing reads {metric.name}"


def test_every_expression_parses(tmp_path: Path) -> None:
    """promtool parses PromQL only inside rule files: one recording rule per expression."""
    found = expressions.all_expressions()
    doc = {
        "groups": [
            {
                "name": "parse",
                "rules": [
                    {"record": f"check:expr:{i}", "expr": e.expr} for i, e in enumerate(found)
                ],
            }
        ]
    }
    path = tmp_path / "parse.yml"
    path.write_text(yaml.safe_dump(doc))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(found)} rules found" in done.stdout


def test_promtool_check_committed_config() -> None:
    done = promtool("check", "config", str(scrape.CONFIG_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = [j["job_name"] for j in scrape.load_config()["scrape_configs"]]
    assert jobs == list(scrape.JOBS.values())


def test_adapted_config_keeps_jobs_and_rules(tmp_path: Path) -> None:
    text = scrape.scrape_config_for(
        {"streams": ["127.0.0.1:9101", "127.0.0.1:9111"], "recoil-serving": ["127.0.0.1:8000"]},
        interval="2s",
    )
    config = yaml.safe_load(text)
    assert config["global"]["scrape_interval"] == "2s"
    assert config["global"]["external_labels"] == {"system": "recoil"}
    assert [
        (j["job_name"], j["static_configs"][0]["targets"]) for j in config["scrape_configs"]
    ] == [
        ("recoil-stream", ["127.0.0.1:9101", "127.0.0.1:9111"]),
        ("recoil-serving", ["127.0.0.1:8000"]),
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    single = yaml.safe_load(scrape.scrape_config_for(["127.0.0.1:1"]))
    assert [j["job_name"] for j in single["scrape_configs"]] == ["recoil"]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"recoil-nope": ["127.0.0.1:1"]}, "no scrape job 'recoil-nope'"),
        (["localhost"], "'localhost' is not host:port"),
    ],
)
def test_adapted_config_rejects_bad_targets(targets: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scrape.scrape_config_for(targets)
