"""``bench.pipeline`` reads each role's CPU seconds from /proc by process group."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.pipeline import CPU_KEYS, cpu_figures, cpu_seconds_by_group

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_a_process_group_is_charged_its_children_cpu() -> None:
    # a parent that burns 0.4 s and waits for a child that burns 0.4 s more, all in one
    # new session, as a supervised worker is: both count while they live
    code = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {BURN!r} + 'time.sleep(30)'])\n"
        f"{BURN}"
        "print('ready', flush=True)\n"
        "child.wait()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == b"ready"
        assert _seconds_of(parent.pid) >= 0.6  # more than the parent alone
    finally:
        import os
        import signal

        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    # the group is gone (SIGKILL reaches the grandchild at once, but not synchronously)
    deadline = time.monotonic() + 10
    while _seconds_of(parent.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _seconds_of(parent.pid) == 0.0


def _seconds_of(pgid: int) -> float:
    by_group = cpu_seconds_by_group()
    assert by_group is not None  # Linux
    return by_group.get(pgid, 0.0)


def test_cpu_figures_per_event_and_example_and_unknown() -> None:
    result = {"worker_events": 1000, "learner_examples": 500}
    figures = cpu_figures(
        {"workers": 1.0, "learner": 2.0}, {"workers": 1.5, "learner": 3.0}, result
    )
    assert figures["worker_cpu_seconds"] == pytest.approx(0.5)
    assert figures["worker_cpu_us_per_event"] == pytest.approx(500.0)
    assert figures["learner_cpu_us_per_example"] == pytest.approx(2000.0)
    # without /proc nothing is known, and every figure says so
    for start, end in (
        (None, {"workers": 1.0, "learner": 2.0}),
        ({"workers": 1.0, "learner": 2.0}, None),
    ):
        unknown = cpu_figures(start, end, result)
        assert set(unknown) == set(CPU_KEYS) == set(figures)
        assert all(value is None for value in unknown.values())
