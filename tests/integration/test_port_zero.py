"""Port 0 means any free port for every listener of ``recoil serve``, ``recoil learn`` and
``recoil simulate``; each prints the address it bound, and that address answers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recoil.core.kafka_settings import KafkaSettings
from recoil.core.topics import ensure_topics

pytestmark = pytest.mark.integration

METRICS = r"metrics: (http://127\.0\.0\.1:\d+)/metrics"  # the line learn and simulate print


@contextlib.contextmanager
def _bound(argv: list[str], pattern: str, cwd: Path) -> Iterator[str]:
    """Run ``recoil ARGV`` for the ``with`` block: the first URL its stdout prints matching
    ``pattern``, checked to name a port other than 0."""
    url, proc = _bound_url(argv, pattern, cwd)
    try:
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        assert port != 0
        yield url
    finally:
        _stop(proc)


def _bound_url(argv: list[str], pattern: str, cwd: Path) -> tuple[str, subprocess.Popen[str]]:
    """Start ``recoil ARGV``; return the first URL its stdout prints matching ``pattern``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "recoil", *argv], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, cwd=cwd, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    found: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            match = re.search(pattern, line)
            if match and not found:
                found.append(match.group(1))
                done.set()
        done.set()  # the process closed its output: it has exited

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout=120)
    if not found:
        _stop(proc)
        pytest.fail(f"recoil {argv[0]} printed no address:\n{''.join(lines)}")
    return found[0], proc


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def test_serve_on_port_zero(tmp_path: Path) -> None:
    with _bound(
        ["serve", "--store", str(tmp_path / "store"), "--port", "0", "--history-url", ""],
        r"serving on (http://127\.0\.0\.1:\d+)", tmp_path,
    ) as url:  # fmt: skip
        assert _get(f"{url}/healthz")[0] == 200
        assert "recoil_serving_snapshot_version" in _get(f"{url}/metrics")[1]


def test_learn_metrics_on_port_zero(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    topic = topic_name("examples")
    ensure_topics(kafka, [topic], partitions=1)
    with _bound(
        ["learn", "--bootstrap-servers", kafka.bootstrap_servers, "--store",
         str(tmp_path / "store"), "--topic", topic, "--group", topic_name("g"),
         "--model-updates-topic", "", "--metrics-port", "0", "--stop-when-idle", "60"],
        METRICS, tmp_path,
    ) as url:  # fmt: skip
        status, text = _get(f"{url}/metrics")
    assert status == 200 and "recoil_learner_steps_total" in text


def test_simulate_metrics_on_port_zero(kafka: KafkaSettings, tmp_path: Path) -> None:
    with _bound(
        ["simulate", "--bootstrap-servers", kafka.bootstrap_servers, "--serving-url",
         "http://127.0.0.1:9", "--metrics-port", "0", "--duration", "60"],
        METRICS, tmp_path,
    ) as url:  # fmt: skip
        status, text = _get(f"{url}/metrics")
    assert status == 200 and "recoil_sim_impressions_total" in text
