"""``recoil serve`` refuses what it cannot run with one line naming the flag to fix.

Each case runs the real command line (``recoil.cli.main``) in this process: a setting
out of range (NaN included), a store it cannot create, an address it cannot listen on.
The exit status is the CLI's configuration-error status (2) and stderr is one line,
never a traceback; none of them starts serving.
"""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest

from recoil.cli import main
from serving.config import ServeConfig


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(["serve", *argv])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "serving on" not in captured.out
    lines = captured.err.strip().splitlines()
    assert lines and lines[-1].startswith("recoil serve: configuration error: ")
    return lines[-1].removeprefix("recoil serve: configuration error: ")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "0.001", "1e309", "7200"])
def test_poll_seconds_must_be_finite_and_in_range(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = _refused(["--store", str(tmp_path), f"--poll-seconds={value}"], capsys)
    assert message.startswith("poll_seconds must be a finite number in [0.01, 3600], got ")
    assert message.endswith("(set by --poll-seconds)")


@pytest.mark.parametrize(
    ("flag", "value", "setting"),
    [
        ("--body-timeout-s", "nan", "body_timeout_s"),
        ("--body-timeout-s", "0", "body_timeout_s"),
        ("--body-timeout-s", "-inf", "body_timeout_s"),
        ("--body-timeout-s", "inf", "body_timeout_s"),
        ("--batch-max-wait-ms", "nan", "batch_max_wait_ms"),
        ("--batch-max-wait-ms", "inf", "batch_max_wait_ms"),
        ("--batch-max-wait-ms", "-1", "batch_max_wait_ms"),
    ],
)
def test_every_float_setting_is_checked_finite_and_in_range(
    flag: str, value: str, setting: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = _refused(["--store", str(tmp_path), f"{flag}={value}"], capsys)
    assert message.startswith(f"{setting} must be") and message.endswith(f"(set by {flag})")


def test_serve_config_defaults_and_edges() -> None:
    assert (ServeConfig().poll_seconds, ServeConfig().body_timeout_s) == (0.5, 5.0)
    ServeConfig(poll_seconds=0.01, body_timeout_s=600.0)  # the edges are in range
    for bad in (math.nan, math.inf, 0.0, 3601.0):
        with pytest.raises(ValueError, match="poll_seconds must be a finite number"):
            ServeConfig(poll_seconds=bad)
        with pytest.raises(ValueError, match="body_timeout_s must be a finite number"):
            ServeConfig(body_timeout_s=bad)


def test_a_store_that_is_a_file_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "hostname"
    file.write_text("not a store\n")
    message = _refused(["--store", str(file)], capsys)
    assert message == (
        f"--store {file} is a file, not a directory; give the learner's snapshot directory"
    )
    below_a_file = file / "store"
    message = _refused(["--store", str(below_a_file)], capsys)
    assert message == (
        f"--store {below_a_file} cannot be created (Not a directory); give the learner's "
        "snapshot directory that exists or that this user can create"
    )


def test_a_store_that_cannot_be_created_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    message = _refused(["--store", "/proc/nope/x"], capsys)  # /proc takes no new directories
    assert message.startswith("--store /proc/nope/x cannot be created (")


def test_a_port_in_use_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--store", str(tmp_path), "--port", str(port), "--history-url", ""]
        message = _refused(argv, capsys)
    assert message.startswith(f"cannot listen on --host 127.0.0.1 --port {port}: ")
    assert "address already in use" in message.lower()
    assert message.endswith("pick another --port, or 0 for any free one")


@pytest.mark.parametrize(
    ("host", "start"),
    [
        ("999.1.1.1", "--host 999.1.1.1 is not an address this machine can resolve ("),
        ("a" * 64, f"--host {'a' * 64} is not a valid host name ("),  # a DNS label is <= 63
    ],
)
def test_a_host_it_cannot_listen_on_is_named(
    host: str, start: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--store", str(tmp_path), "--host", host, "--port", "0", "--history-url", ""]
    assert _refused(argv, capsys).startswith(start)
