"""What commands check before their work starts: the results directory, the seed, the
simulator's own options, an unreachable broker. Each is one line naming the flag."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from recoil.core.dirs import check_directory, ensure_directory
from recoil.core.errors import ConfigError
from tests.support.cli import config_error


def test_check_directory_takes_a_directory_or_one_it_could_create(tmp_path: Path) -> None:
    check_directory(tmp_path, "--out", "a directory")  # exists
    check_directory(tmp_path / "new" / "deeper", "--out", "a directory")  # creatable
    assert not (tmp_path / "new").exists()  # and nothing was created
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match=r"--out .*afile is a file, not a directory"):
        check_directory(afile, "--out", "a directory")
    with pytest.raises(ConfigError, match=r"cannot be created: .*afile is a file"):
        check_directory(afile / "sub", "--out", "a directory")


def test_ensure_directory_creates_it_or_says_why_not(tmp_path: Path) -> None:
    ensure_directory(tmp_path / "a" / "b", "--store", "the snapshot directory")
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []
    # an existing directory is taken as it is: serving only reads its store
    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o555)
    ensure_directory(readonly, "--store", "the snapshot directory")
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match=r"--store .* is a file, not a directory"):
        ensure_directory(afile, "--store", "the snapshot directory")


@pytest.mark.parametrize(
    "argv",
    [
        ["experiment", "--world", "tiny", "--arms", "no_signal", "--out"],
        ["bench", "freshness", "--out"],
        ["bench", "pipeline", "--events", "10", "--out"],
        ["report", "--prometheus", "http://127.0.0.1:9", "--out"],
    ],
)
def test_an_out_that_is_a_file_stops_the_command_before_its_work(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "results"
    afile.write_text("not a directory")
    err = config_error([*argv, str(afile)], capsys)
    assert f"--out {afile} is a file, not a directory" in err
    assert err.count("\n") == 1  # one line


@pytest.mark.parametrize("command", ["experiment", "backtest"])
def test_a_seed_numpy_cannot_take_is_refused_first(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [command] + (["/nonexistent.tsv"] if command == "backtest" else [])
    err = config_error([*argv, "--out", str(tmp_path / "out"), "--seed", "-1"], capsys)
    assert "--seed must be in 0..4294967295, got -1" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--duration", "nan"], "duration must be a finite number of seconds >= 0, got nan"),
        (["--duration", "-1"], "got -1.0"),
        (["--metrics-port", "70000"], "metrics_port=70000"),
    ],
)
def test_the_simulators_own_options_are_checked(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in config_error(
        ["simulate", "--bootstrap-servers", "127.0.0.1:1", *flags], capsys
    )


def test_simulate_without_a_broker_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    argv = ["simulate", "--bootstrap-servers", f"127.0.0.1:{port}", "--duration", "1"]
    err = config_error(argv, capsys)
    assert f"cannot reach a Kafka broker at 127.0.0.1:{port}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["learn", "--bootstrap-servers", "127.0.0.1:1", "--store"], "--store"),
        (
            ["learn", "--bootstrap-servers", "127.0.0.1:1", "--store", "s", "--checkpoint-dir"],
            "--checkpoint-dir",
        ),
        (["worker", "--bootstrap-servers", "127.0.0.1:1", "--data-dir"], "--data-dir"),
        (["demo", "--workdir"], "--workdir"),
    ],
)
def test_a_directory_flag_that_names_a_file_stops_the_command_before_kafka(
    argv: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    err = config_error([*argv, str(afile)], capsys)  # at once: 127.0.0.1:1 is never tried
    assert f"{flag} {afile} is a file, not a directory" in err and "Traceback" not in err


def test_a_results_file_in_no_directory_stops_simulate_before_kafka(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = ["simulate", "--bootstrap-servers", "127.0.0.1:1", "--results", f"{afile}/r.jsonl"]
    assert f"--results {afile}/r.jsonl: its directory" in config_error(argv, capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pipeline", "--world", "nope"], "--world 'nope': choose one of"),
        (["pipeline", "--file", "/nonexistent.tsv"], "--file /nonexistent.tsv: no such log file"),
        (["pipeline", "--file", "/"], "--file /: a directory, not a log file"),
        (["pipeline", "--map", "user_id=u"], "--map maps the columns of --file"),
        (["pipeline", "--threads", "0"], "--threads 0: must be >= 1"),
        (["pipeline", "--timeout", "nan"], "--timeout nan: must be a finite number"),
        (["streams", "--timeout", "inf"], "--timeout inf: must be a finite number"),
        (["serving", "--seconds", "nan"], "--seconds nan: must be a finite number of seconds > 0"),
        (["serving", "--warmup", "-1"], "--warmup -1.0: must be a finite number of seconds >= 0"),
    ],
)
def test_a_benchmark_refuses_a_bad_flag_before_its_broker_or_world(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """These gave a traceback minutes in (a world or file that is not there) or ran
    forever (a NaN duration)."""
    kafka = [] if argv[0] == "serving" else ["--bootstrap-servers", "127.0.0.1:1"]
    err = config_error(["bench", *argv, *kafka], capsys)
    assert message in err and "Traceback" not in err
