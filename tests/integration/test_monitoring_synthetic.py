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

import matplotlib.image
import pytest

from monitoring import catalogue, expressions
from monitoring.catalogue import Part
from monitoring.dashboards import DASHBOARDS
from monitoring.report import PrometheusClient, ReportError, write_report
from monitoring.scrape import JOBS
from recoil import cli
from recoil.broker.embedded import free_port
from recoil.core.processes import die_with_parent
from tests.support.monitoring_check import check_monitoring
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.integration


def scrape(target: str) -> bytes:
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as response:
        body: bytes = response.read()
        return body


def newest_version(server: PrometheusServer) -> int:
    return max(
        int(r["metric"]["model_version"]) for r in server.query("recoil_responsiveness_ratio")
    )


def version_order(server: PrometheusServer) -> dict[tuple[str, str], tuple[int, int]]:
    """(previous, latest) model version per (arm, similarity), from the recording rules."""
    order: dict[tuple[str, str], list[int]] = {}
    for i, rule in enumerate(("previous", "latest")):
        for r in server.query(f"arm_similarity:recoil_responsiveness_ratio:{rule}"):
            key = (r["metric"]["arm"], r["metric"]["similarity"])
            order.setdefault(key, [0, 0])[i] = int(r["metric"]["model_version"])
    return {key: (pair[0], pair[1]) for key, pair in order.items()}


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


def test_every_panel_rule_and_signal_returns_data_and_report_plots_them(
    exporters: dict[Part, str],
    prometheus_factory: Callable[..., PrometheusServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One Prometheus for both halves: the rules need a minute of data before they answer."""
    started = time.monotonic()
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
    # Versions appear every 4 s and rules run every 1 s, so versions first seen after
    # Prometheus started are ordered exactly (those already there at its first scrape tie).
    at_start = newest_version(server)
    deadline = time.monotonic() + 30
    while True:
        order = version_order(server)
        if min(prev for prev, _ in order.values()) > at_start or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(order) == 4
    for previous_version, latest_version in order.values():
        assert previous_version > at_start
        assert latest_version == previous_version + 1
    # 400s are client errors: the 5xx ratio is exactly 0, present although no 5xx series exists.
    ratio = server.query("job:recoil_serving_requests:error_ratio_rate5m")
    assert [r["value"][1] for r in ratio] == ["0"]

    # recoil report on the same server: every panel of every dashboard has curves.
    time.sleep(max(0.0, 40 - (time.monotonic() - started)))  # 40 s of data: curves, not dots
    written = write_report(PrometheusClient(server.url), tmp_path, range_seconds=40, step_seconds=1)
    assert sorted(p.name for p in written) == sorted(f"{d.uid}.png" for d in DASHBOARDS)
    for path, panels in written.items():
        assert [p.panel.title for p in panels if p.empty] == [], path.name
        image = matplotlib.image.imread(path)  # (H, W, 4) floats
        assert image.shape[0] > 300 and image.shape[1] == 1440
        colours = {tuple(px) for px in (image[::4, ::4, :3] * 255).astype(int).reshape(-1, 3)}
        assert len(colours) > 50, f"{path.name} looks blank"
    responsiveness = written[tmp_path / "recoil-responsiveness.png"]
    cluster = responsiveness[0]
    assert cluster.panel.title == "Cluster responsiveness by model version"
    versions = {series.labels["model_version"] for _, series in cluster.lines}
    assert len(versions) >= 2 and len(cluster.bands) == len(cluster.lines)
    # The command: same output, one line per PNG.
    code = cli.main(
        ["report", "--prometheus", server.url, "--out", str(tmp_path / "cli"), "--range", "40s",
         "--step", "2s", "--dashboard", "recoil-responsiveness"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    count = len(next(d for d in DASHBOARDS if d.uid == "recoil-responsiveness").panels)
    assert count >= 6  # responsiveness by version, its intervals, and the A/B panels
    png = tmp_path / "cli" / "recoil-responsiveness.png"
    assert f"{png}  ({count} panels, 0 without data)" in out
    # A query Prometheus rejects names Prometheus' reason.
    with pytest.raises(ReportError, match=r"answered 400: .*parse error"):
        PrometheusClient(server.url).query_range("sum(", 0, 10, 1)
