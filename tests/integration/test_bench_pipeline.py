"""``recoil bench pipeline`` run small on the real broker: every event read, every example
trained, both consumer lags drained to 0, and the JSON and PNG written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import recoil_command

pytestmark = pytest.mark.integration

EVENTS = 3_000


@pytest.mark.timeout(180)
def test_pipeline_drains_every_event_through_worker_and_learner(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = recoil_command(
        "bench", "pipeline", "--bootstrap-servers", kafka.bootstrap_servers,
        "--events", str(EVENTS), "--world", "small", "--out", str(out),
    )  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, timeout=170)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    result = json.loads((out / "pipeline.json").read_text())
    assert result["events"] == EVENTS
    assert result["worker_events"] == EVENTS  # every event read by the worker
    assert result["worker_examples"] > 0
    assert result["learner_examples"] == result["worker_examples"]  # all trained, once
    assert result["drained"] is True
    last = result["samples"][-1]
    assert last["worker_lag"] == 0 and last["learner_lag"] == 0
    # Lag was measured (a number, not None) once events were in. Whether a 1-s sample
    # catches a nonzero lag depends on the machine: an idle one reads and commits 3,000
    # events between two samples (max_worker_lag 0 in a fresh-clone CI run).
    assert all(s["worker_lag"] is not None for s in result["samples"] if s["sent"] > 0)
    assert result["worker_events_per_second"] > 0 and result["learner_examples_per_second"] > 0
    assert "workers:" in run.stdout and "learner:" in run.stdout  # the figures are printed
    png = (out / "pipeline.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    # each role's CPU over the run, from /proc: the figure that says who keeps up
    assert result["worker_cpu_seconds"] > 0 and result["learner_cpu_seconds"] > 0
    assert result["worker_cpu_us_per_event"] == pytest.approx(
        1e6 * result["worker_cpu_seconds"] / EVENTS
    )
    assert result["learner_cpu_us_per_example"] > 0
    assert "us an example" in run.stdout
    # and how the machine's cores were spent besides: the replay in this process, the
    # broker (a JVM, under "anything else"), idle time; together within the cores' time
    assert result["harness_cpu_seconds"] > 0 and result["other_cpu_seconds"] > 0
    roles = ("worker", "learner", "harness", "other", "idle")
    spent = sum(result[f"{role}_cpu_seconds"] for role in roles)
    window = result["replay_seconds"] + result["drain_seconds"]  # to the last sample
    assert spent <= result["cores"] * (window + 1.5)  # + the last sample to the reading
    assert "the broker and anything else" in run.stdout
