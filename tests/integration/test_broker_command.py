"""``recoil broker`` prints its address, serves Kafka, and leaves nothing behind on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from kafka import KafkaAdminClient

from recoil.broker.embedded import free_port

pytestmark = pytest.mark.integration


def _java_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "kafka.Kafka"], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    return [p for p in pids if _ppid(p) == pid]


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _alive(pid: int) -> bool:
    """``pid`` still exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_broker_command_runs_until_ctrl_c() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "recoil", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"recoil broker exited early:\n{''.join(lines)}"
            lines.append(line)
            if line.startswith("bootstrap servers:"):
                break
        assert lines[-1].strip() == f"bootstrap servers: 127.0.0.1:{port}"
        children = _java_children(proc.pid)
        assert len(children) == 1, "exactly one broker JVM"
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
        admin.close()

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        rest = proc.stdout.read()
        assert "stopping broker" in rest
        # the JVM is reaped by then or soon after; wait for that (bounded), not a fixed time
        deadline = time.monotonic() + 30
        while _alive(children[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(children[0]), f"broker JVM {children[0]} outlived recoil broker"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
