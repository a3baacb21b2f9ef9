"""Rules, dashboards and promtool against a real Prometheus scraping real exporter processes.

The exporters are monitoring/synthetic.py (one process per role, every catalogued
metric with plausible values), not the recoil loop: this checks monitoring/'s
own config, rules and expressions. The same check against the running loop
uses tests/support/monitoring_check.py with the roles' metrics ports.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monitoring import catalogue, expressions
from monitoring.catalogue import Part
from monitoring.scrape import JOBS
from recoil.broker.embedded import free_port
from recoil.processes import die_with_parent
from tests.support.monitoring_check import check_monitoring
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.integration


def scrape(target: str) -> bytes:
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as response:
        body: bytes = response.read()
        return body


@pytest.fixture(scope="module")
def exporters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Part, str]]:
    """One synthetic exporter process per role, new snapshot versions every 4 s."""
    logs = tmp_path_factory.mktemp("exporters")
    procs: dict[Part, tuple[subprocess.Popen[bytes], Path]] = {}
    targets: dict[Part, str] = {}
    for seed, part in enumerate(Part):
        port = free_port()
        log = logs / f"{part.value}.log"
        with log.open("wb") as out:
            procs[part] = (
                subprocess.Popen(
                    [sys.executable, "-m", "monitoring.synthetic", "--port", str(port),
                     "--part", part.value, "--seed", str(seed), "--snapshot-every", "4"],
                    stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                ),
                log,
            )  # fmt: skip
        targets[part] = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    for part, target in targets.items():
        while True:
            proc, log = procs[part]
            if proc.poll() is not None:
                raise RuntimeError(f"exporter {part} exited:\n{log.read_text()}")
            try:
                scrape(target)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"exporter {part} not up:\n{log.read_text()}") from None
                time.sleep(0.2)
    yield targets
    for proc, _ in procs.values():
        proc.terminate()
        proc.wait(10)


def test_real_scrape_passes_promtool_check_metrics(exporters: dict[Part, str]) -> None:
    for part, target in exporters.items():
        body = scrape(target)
        done = subprocess.run(
            ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30
        )
        assert done.returncode == 0 and not done.stdout.strip(), (part, done.stdout, done.stderr)
        for metric in catalogue.of_part(part):
            assert f"# TYPE {metric.name} {metric.type}".encode() in body


def test_every_panel_rule_and_signal_returns_data(
    exporters: dict[Part, str], prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    check = check_monitoring(
        prometheus_factory, {JOBS[part]: [target] for part, target in exporters.items()}
    )
    found = expressions.all_expressions()
    assert set(check.series) == {e.source for e in found}
    server = check.server
    up = {r["metric"]["job"]: r["value"][1] for r in server.query("up")}
    assert up == dict.fromkeys(JOBS.values(), "1")
    # The synthetic loop has two arms and both similarities: one newest and one previous each.
    latest = server.query("arm_similarity:recoil_responsiveness_ratio:latest")
    previous = server.query("arm_similarity:recoil_responsiveness_ratio:previous")
    pairs = {(r["metric"]["arm"], r["metric"]["similarity"]) for r in latest}
    assert pairs == {
        (a, s) for a in ("feature_and_labels", "no_signal") for s in ("cluster", "creator")
    }
    assert {(r["metric"]["arm"], r["metric"]["similarity"]) for r in previous} == pairs
    # 400s are client errors: the 5xx ratio is exactly 0, present although no 5xx series exists.
    ratio = server.query("job:recoil_serving_requests:error_ratio_rate5m")
    assert [r["value"][1] for r in ratio] == ["0"]
