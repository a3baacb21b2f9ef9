"""``recoil demo --prometheus``'s server, for real: Debian's prometheus with the committed
rules scrapes a synthetic simulator; a target nobody serves sets off RecoilTargetDown,
whose change the demo's poll reports, and the regression alert's pooled series arrive."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from recoil.broker.embedded import free_port
from recoil.commands._demo_prometheus import DemoPrometheus, describe
from recoil.core.processes import ProcessGroup

pytestmark = pytest.mark.integration


def test_the_demo_server_evaluates_the_committed_rules_and_reports_alerts(
    tmp_path: Path,
) -> None:
    port, nobody = free_port(), free_port()
    with ProcessGroup(tmp_path / "logs") as group:
        group.start("synthetic", [sys.executable, "-m", "monitoring.synthetic",
                                  "--port", str(port), "--part", "simulator",
                                  "--snapshot-every", "5"])  # fmt: skip
        server = DemoPrometheus(
            tmp_path / "prometheus",
            {"recoil-simulator": [f"127.0.0.1:{port}"], "recoil-serving": [f"127.0.0.1:{nobody}"]},
        )
        server.start(group)
        log = tmp_path / "prometheus.jsonl"
        lines: list[str] = []
        series: dict[str, dict[str, float]] = {}
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            group.check()
            lines += server.poll(time.monotonic(), log)
            series = json.loads(log.read_text().splitlines()[-1])["series"]
            # The three series are three queries; a rule evaluation can land between
            # them (CI once read no "newest" but an "avg_recent"), so wait for all three.
            if lines and all(series.get(name) for name in ("newest", "avg_recent", "avg_baseline")):
                break
            time.sleep(5)
    down = [line for line in lines if "RecoilTargetDown" in line]
    assert down and down[0].endswith(": inactive -> pending"), lines
    assert f"instance=127.0.0.1:{nobody}" in down[0]
    assert not [line for line in lines if "RecoilResponsivenessRegressed" in line]
    # The pooled series exist from the first versions on, per arm and similarity.
    for name in ("newest", "avg_recent", "avg_baseline"):
        assert set(series[name]) == {f"{arm}/{similarity}"
                                     for arm in ("feature_and_labels", "no_signal")
                                     for similarity in ("cluster", "creator")}  # fmt: skip
    summary = server.summary()
    assert "RecoilTargetDown" in summary and "pending from" in summary
    assert describe(server.changes[0][1]) in summary
