"""The supervisor's documented restart limit (docs/streams.md): at most 5 restarts in
5 minutes, then it returns the child's status; restarts older than the window do
not count. The child is a tiny Python command that appends one line per run to a
file and exits with a given status, so the number of runs is exact.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest

from streams.supervisor import EXIT_SEND_FAILED, supervise

# Appends "run" to argv[1]; exits argv[2] until argv[3] runs have happened, then 0.
CHILD = (
    "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
    "runs = (p.read_text() if p.exists() else '') + 'r'; p.write_text(runs); "
    "sys.exit(int(sys.argv[2]) if len(runs) < int(sys.argv[3]) else 0)"
)


def _child(log: Path, status: int, succeed_on_run: int = 1_000) -> list[str]:
    return [sys.executable, "-c", CHILD, str(log), str(status), str(succeed_on_run)]


def _runs(log: Path) -> int:
    return len(log.read_text())


def test_documented_defaults_are_five_restarts_in_five_minutes() -> None:
    parameters = inspect.signature(supervise).parameters
    assert parameters["max_restarts"].default == 5
    assert parameters["window"].default == 300.0


@pytest.mark.parametrize("status", [1, EXIT_SEND_FAILED])  # any crash, not only deliberate
def test_gives_up_after_the_default_limit_with_the_last_status(tmp_path: Path, status: int) -> None:
    log = tmp_path / "runs"
    assert supervise(_child(log, status)) == status
    assert _runs(log) == 6  # the first run and 5 restarts; the 6th failure gives up


@pytest.mark.parametrize("limit", [0, 1, 3])
def test_gives_up_after_exactly_max_restarts(tmp_path: Path, limit: int) -> None:
    log = tmp_path / "runs"
    assert supervise(_child(log, 3), max_restarts=limit, window=300.0) == 3
    assert _runs(log) == limit + 1


def test_succeeds_on_the_last_allowed_restart(tmp_path: Path) -> None:
    log = tmp_path / "runs"
    # fails 5 times, the 6th run (5th restart) exits 0: within the limit
    assert supervise(_child(log, 1, succeed_on_run=6), max_restarts=5) == 0
    assert _runs(log) == 6


def test_restarts_outside_the_window_do_not_count(tmp_path: Path) -> None:
    log = tmp_path / "runs"
    # window 0: each earlier restart has left the window by the next failure, so a
    # limit of 1 never trips; 8 failures then success
    assert supervise(_child(log, 1, succeed_on_run=9), max_restarts=1, window=0.0) == 0
    assert _runs(log) == 9
