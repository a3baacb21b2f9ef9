"""Issue 6's check for real: monitoring/ against the running loop on the real broker.

A tiny world runs the loop of ``recoil demo`` (worker, a learner and serving per arm,
simulated users with responsiveness probes); a real Prometheus scrapes every role with
monitoring/'s config and rules, and every dashboard panel, recording rule and alert
signal must return data (a NaN quantile of a histogram nothing was observed in is no
data: the freshness panels need the loop to observe the freshness histograms).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from monitoring.catalogue import Part
from monitoring.report import PrometheusClient, write_report
from monitoring.scrape import JOBS
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import ProcessGroup
from recoil.loop import Loop, LoopConfig
from tests.support.monitoring_check import check_monitoring
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.integration


def test_every_panel_rule_and_signal_returns_data_on_the_loop(
    kafka: KafkaSettings, prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    config = LoopConfig(
        workdir=tmp_path / "loop",
        users=40,
        rate=60.0,
        topic_suffix=f".mon-{uuid.uuid4().hex[:8]}",
        snapshot_every_steps=40,
        snapshot_every_seconds=10.0,
        batch_size=64,
        probe_simulations=40,
        probe_k=10,
    )
    with ProcessGroup(tmp_path / "logs") as group:
        loop = Loop(config, kafka, group)
        loop.start()
        ports = loop.ports
        targets = {
            JOBS[Part.STREAMS]: [f"127.0.0.1:{ports.worker_metrics}"],
            JOBS[Part.LEARNER]: [f"127.0.0.1:{p}" for p in ports.learner_metrics.values()],
            JOBS[Part.SERVING]: [f"127.0.0.1:{p}" for p in ports.serving.values()],
            JOBS[Part.SIMULATOR]: [f"127.0.0.1:{ports.simulator_metrics}"],
        }
        assert sorted(h for hosts in targets.values() for h in hosts) == sorted(
            loop.metrics_targets()
        )
        try:
            # The regression alert's baseline is the newest version's mean over the 10m
            # before the last 3m, and the recent mean until that window holds a version:
            # it returns data from the first probe on.
            check = check_monitoring(prometheus_factory, targets, timeout=420.0)
        except AssertionError:
            for child in group.children:
                print(f"--- {child.name} ---\n{child.log_tail(15)}")
            raise
        group.check()  # every role still running
        # Every arm gets probed at a second version: newest and previous for both.
        for arm in config.arms:
            check.server.wait_for(
                f'arm_similarity:recoil_responsiveness_ratio:previous{{arm="{arm}"}}', timeout=180
            )
        # A/B: every arm served its own users, and its rates and change are exported.
        for arm in config.arms:
            rates = check.server.query(f'recoil_sim_arm_rate_ratio{{arm="{arm}"}}')
            assert {r["metric"]["rate"] for r in rates} == {"dislike", "repeat_dislike",
                                                            "engagement"}  # fmt: skip
        changes = check.server.query("recoil_sim_ab_change_ratio")
        assert {(r["metric"]["arm"], r["metric"]["baseline"]) for r in changes} == {
            (config.arms[0], config.arms[-1])
        }
        up = check.server.query('up{job=~"recoil.*"} == 1')
        assert len(up) == len(loop.metrics_targets())
        # The report of the real loop: responsiveness per arm and version, with intervals.
        written = write_report(PrometheusClient(check.server.url), tmp_path / "report", 150, 2)
        panels = written[tmp_path / "report" / "recoil-responsiveness.png"]
        for panel in panels[:2]:
            assert {s.labels["arm"] for _, s in panel.lines} == set(config.arms)
            assert len(panel.bands) == len(panel.lines)
