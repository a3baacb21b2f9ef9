"""Hostile flag values a sweep of every option of every command found ending in a
traceback (or taken, and failing minutes later): each is now refused at start in one line
that names the flag, with exit status 2.

The sweep itself (every option, with NaN, infinities, -1, 0, 1e308, 20-digit integers,
empty and 10 kB strings, directories for files and files for directories) ran each case as
a subprocess and is not part of the suite; these pin what it found. The commands run in
this process (``recoil.cli.main``); nothing here reaches a broker.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest

from recoil.cli import main
from recoil.core.errors import ConfigError
from recoil.core.kafka_settings import KafkaSettings
from tests.support.cli import config_error

K = ["--bootstrap-servers", "127.0.0.1:1"]  # never contacted: every case stops before Kafka
HUGE = "99999999999999999999"  # past int64
LONG = "x" * 10_000  # a file name longer than the system takes (ENAMETOOLONG)


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``recoil ARGV``'s one line: exit status 2, no traceback (``config_error``)."""
    err = config_error(argv, capsys)
    assert err.count("\n") == 1, err
    return err


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A file that is no event log (a CSV without KuaiRand's header and no --map)."""
    path = tmp_path / "afile"
    path.write_text("x\n")
    return path


# --- a name longer than the system takes: Path.exists / is_file raised OSError ----------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["experiment", "--world", "tiny", "--out", "{tmp}/" + LONG], "--out {tmp}/x"),
        (["learn", *K, "--store", "{tmp}/" + LONG], "--store {tmp}/x"),
        (["demo", *K, "--workdir", "{tmp}/" + LONG], "--workdir {tmp}/x"),
        (["simulate", *K, "--results", "{tmp}/" + LONG], "--results {tmp}/x"),
        (["backtest", "{tmp}/" + LONG, "--out", "{tmp}/out"], "no such log file: {tmp}/x"),
        (["replay", "{tmp}/" + LONG, *K], ": no such log file"),
        (["bench", "pipeline", *K, "--file", "{tmp}/" + LONG], "--file {tmp}/x"),
    ],
)
def test_a_file_name_too_long_is_refused(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert list(tmp_path.iterdir()) == []


# --- numbers past what the code can hold ------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", f"embedding_dim={HUGE}"], "--model: embedding_dim must be at most 65536"),
        (["--model", "max_len=9999999999"], "max_len must be at most 65536"),
        (["--model", "init_std=1e308"], "--model: init_std must be at most 1e+06 in size"),
        (["--model", "dislike_push_init=-1e308"], "dislike_push_init must be at most 1e+06"),
        (["--model", "max_len=51"], "--model: model.max_len (51) must not exceed labels.h"),
        (["--label", "like_weight=1e308"], "at most 3.4e+38 (float32), got like_weight=1e+308"),
        (["--simulations", HUGE], "(set by --simulations"),
        (["--k", HUGE], "(set by --simulations, --k)"),
    ],
)  # fmt: skip
def test_experiment_refuses_a_model_or_probe_it_could_not_build(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each was a traceback after the world was simulated (torch, numpy, the JSON writer)."""
    err = refused(["experiment", "--world", "tiny", "--out", str(tmp_path), *argv], capsys)
    assert message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["learn", *K, "--store", "{tmp}", "--embedding-dim", HUGE], "(set by --embedding-dim)"),
        (["learn", *K, "--store", "{tmp}", "--threads", HUGE], "at most 1024 (set by --threads)"),
        (["learn", *K, "--store", "{tmp}", "--num-nodes", HUGE], "at most 1024, got 1, 99"),
        (["learn", *K, "--store", "{tmp}", "--group", " "], "got ' ' (set by --group)"),
        (["worker", *K, "--data-dir", "{tmp}", "--partitions", HUGE], "(set by --partitions)"),
        (["worker", *K, "--data-dir", "{tmp}", "--replication-factor", HUGE],
         "(set by --replication-factor)"),
        (["worker", *K, "--data-dir", "{tmp}", "--app-id", ".."], "'..') (set by --app-id)"),
        (["replay", "{tmp}", *K, "--partitions", "2501"], "--partitions 2501: must be at m"),
        (["bench", "pipeline", *K, "--events", HUGE], "--events must be at most 100000000"),
        (["bench", "pipeline", *K, "--partitions", "5000"], "--partitions at most 2500"),
        (["bench", "pipeline", *K, "--threads", HUGE], "--threads at most 1024"),
        (["bench", "pipeline", *K, "--max-len", "0"], "--max-len=0: max_len must be >= 1"),
        (["bench", "pipeline", *K, "--batch-size", "-1"], "--batch-size -1: batch_size must"),
        (["simulate", *K, "--probe-top-n", "501"], "--probe-top-n 501: too large"),
        (["simulate", *K, "--probe-k", HUGE], f"--probe-k {HUGE}: too large"),
        (["simulate", *K, "--probe-simulations", HUGE], f"--probe-simulations {HUGE}: too large"),
    ],
)  # fmt: skip
def test_counts_kafka_torch_or_serving_would_refuse_are_refused_first(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A partition count past Int32 (or past Kafka's 10,000 a request) was a struct.error or
    PolicyViolationError traceback once connected; torch refused a 20-digit width, thread
    count or world size; librdkafka aborted the learner on a blank group; bench pipeline's
    learner refused its flags once the events were sent; serving answers k <= 500, so a
    larger probe top-n failed every probe."""
    err = refused([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert message in err


# --- addresses and URLs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--bootstrap-servers", "a..b:1"], "server 'a..b:1' is not host:port"),
        (["simulate", *K, "--serving-url", "http://[::1"], "--serving-url 'http://[::1': Inv"),
        (["simulate", *K, "--probe", "a=http:// h"], "--probe 'a=http:// h' must be ARM=http://"),
        (["simulate", *K, "--probe", "a=http://h:99999"], "Port out of range"),
        (["broker", "--port", "0", "--host", "::1"], "--host ::1"),
    ],
)  # fmt: skip
def test_addresses_a_client_cannot_use_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """aiokafka's IDNA codec, urllib and the broker's IPv4 port probe raised tracebacks."""
    assert message in refused(argv, capsys)


@pytest.mark.parametrize("url", ["http://[::1", "http:// h"])
def test_report_refuses_a_prometheus_url_urllib_cannot_request(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--prometheus", url, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"recoil report: --prometheus {url!r} is not a URL") and err.count("\n") == 1
    )


# --- files that are no log, stores without a snapshot --------------------------------------


def test_bench_pipeline_refuses_a_file_that_is_no_log_before_its_broker(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(["bench", "pipeline", *K, "--file", str(log)], capsys)
    assert f"{log}: give a column mapping (--map" in err
    err = refused(["bench", "pipeline", *K, "--file", str(log), "--map", "nope"], capsys)
    assert "--map 'nope': mapping entry 'nope' is not FIELD=COLUMN" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--snapshot", "{tmp}"], "--snapshot {tmp}: no snapshot in {tmp}"),
        (["--snapshot", "{tmp}/afile"], "--snapshot {tmp}/afile: "),
        (["--k", "0"], "--k must be in 1..500"),
        (["--history-length", HUGE], "--history-length at most 1000"),
        (["--concurrency", "1,100000"], "--concurrency must be at most 1024"),
        (["--items", HUGE], "--items at most 10000000"),
    ],
)
def test_bench_serving_refuses_what_recoil_serve_would_not_answer(
    argv: list[str], message: str, log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A 400 from the server, or a store without a snapshot, was a traceback."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its work directory
    err = refused(["bench", "serving", *(a.replace("{tmp}", str(tmp_path)) for a in argv)], capsys)
    assert message.replace("{tmp}", str(tmp_path)) in err


# --- the loop's arms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arms", "no_signal,no_signal"], "name each arm once (set by --arms)"),
        (["--switch", "nope=no_signal@1"], "with ARM and OTHER among the arms"),
        (["--switch", "feature_and_labels=no_signal@nan"], "SECONDS finite and >= 0 (set by"),
        (["--switch", "feature_and_labels=no_signal@inf"], "SECONDS finite and >= 0 (set by"),
    ],
)
def test_demo_refuses_arms_its_children_would_refuse(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulator child refused them once the broker, worker and learners were up (a
    NaN switch time stayed NaN through the warm-up shift)."""
    assert message in refused(["demo", *K, "--workdir", str(tmp_path), *argv], capsys)


# --- taken, and no traceback later ----------------------------------------------------------


def test_replay_takes_a_limit_past_sys_maxsize_as_no_limit(
    tmp_path: Path, closed_port: int, quick_bootstrap: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """islice refused it with a ValueError traceback; now the run reaches the broker."""
    path = tmp_path / "one.jsonl"
    path.write_text(
        '{"event_id": "e1", "user_id": "u", "item_id": "i", "creator_id": "c", '
        '"timestamp": 1000.0, "surface": "home", "dwell_seconds": 3.0, '
        '"item_duration_seconds": 10.0, "liked": true, "disliked": false, '
        '"dismissed": false, "schema_version": 1}\n'
    )
    servers = f"127.0.0.1:{closed_port}"
    argv = ["replay", str(path), "--bootstrap-servers", servers, "--limit", HUGE]
    assert f"cannot reach a Kafka broker at {servers}" in config_error(argv, capsys)


def test_the_workers_topics_name_an_unreachable_broker(
    closed_port: int, quick_bootstrap: None
) -> None:
    """recoil worker and recoil bench streams ended in kafka-python's KafkaTimeoutError."""
    from streams.config import StreamsConfig
    from streams.topics import prepare_topics

    servers = f"127.0.0.1:{closed_port}"
    with pytest.raises(ConfigError, match=f"cannot reach a Kafka broker at {servers}"):
        prepare_topics(KafkaSettings(servers), StreamsConfig())


def test_a_diverged_loss_is_written_as_null() -> None:
    """A final loss of inf stopped the run at its JSON results, after all the training."""
    from simulator.report import _finite

    assert _finite({"loss": [math.inf, -math.inf, math.nan, 1.0]}) == {
        "loss": [None, None, None, 1.0]
    }


def test_a_level_without_an_answer_has_no_ratio() -> None:
    """bench serving divided by a plain level's 0 requests/s (--seconds 1e-320)."""
    from bench.serving import _table

    row: dict[str, Any] = {"concurrency": 1, "requests_per_second": 0.0, "p50_ms": math.nan,
                           "p99_ms": math.nan, "server_cpu_ms_per_request": math.nan}  # fmt: skip
    rows = [{**row, "server": "plain"}, {**row, "server": "serve"}]
    _table(rows)
    assert math.isnan(rows[1]["ratio_to_plain"])
