"""``bench.pipeline`` reads each role's CPU seconds from /proc by process group."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.pipeline import CPU_KEYS, cpu_figures, cpu_seconds_by_group, machine_cpu_seconds

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
    start = {"workers": 1.0, "learner": 2.0, "harness": 0.5, "machine": 10.0, "idle": 4.0}
    end = {"workers": 1.5, "learner": 3.0, "harness": 0.75, "machine": 12.0, "idle": 5.0}
    figures = cpu_figures(start, end, result)
    assert figures["worker_cpu_seconds"] == pytest.approx(0.5)
    assert figures["worker_cpu_us_per_event"] == pytest.approx(500.0)
    assert figures["learner_cpu_us_per_example"] == pytest.approx(2000.0)
    assert figures["harness_cpu_seconds"] == pytest.approx(0.25)
    # the machine was busy 2 s: 0.5 + 1 + 0.25 by the three, the rest by others
    assert figures["other_cpu_seconds"] == pytest.approx(0.25)
    assert figures["idle_cpu_seconds"] == pytest.approx(1.0)
    # ticks read a moment apart can leave the three above the machine's total: 0, not < 0
    late = {**end, "learner": 3.5}
    assert cpu_figures(start, late, result)["other_cpu_seconds"] == 0.0
    # without /proc nothing is known, and every figure says so
    for unknown_start, unknown_end in ((None, end), (start, None)):
        unknown = cpu_figures(unknown_start, unknown_end, result)
        assert set(unknown) == set(CPU_KEYS) == set(figures)
        assert all(value is None for value in unknown.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_the_machine_is_charged_a_burn_in_this_process() -> None:
    before = machine_cpu_seconds()
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
    after = machine_cpu_seconds()
    assert before is not None and after is not None
    assert after[0] - before[0] >= 0.25  # busy: at least this process's burn
    assert after[1] >= before[1]  # idle only grows
