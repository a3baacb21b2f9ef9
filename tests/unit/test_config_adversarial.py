"""Bad configuration fails at start, in one line that names the setting: never a traceback,
a hang, or silent acceptance.

Each case here was accepted before, or failed late (after Kafka's 30 s bootstrap timeout,
after the JVM started, at the first probe, on every restart of a supervised worker) or as
a traceback. The commands run in this process (``recoil.cli.main``); nothing here reaches a
broker, and the one address a test listens on is its own.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recoil.cli import main
from recoil.commands.demo import DemoOptions
from recoil.commands.learn import check_accelerator
from recoil.commands.serve import check_history_url
from recoil.core.checks import check_listen
from recoil.core.dirs import check_directory
from recoil.core.errors import ConfigError
from recoil.core.kafka_settings import KafkaSettings
from streams.config import StreamsConfig

P = "RECOIL_KAFKA_"
SASL_ONLY = "SASL_PLAINTEXT or SASL_SSL"
NOT_LOCAL = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never an address of this machine
BAD_NAME = "a..b"  # the IDNA codec refuses the empty label: no DNS lookup is made


def fails_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``recoil ARGV``'s error: exit status 2 and one line, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"recoil {argv[0]}: configuration error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port this test listens on (so it is in use for everyone else)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture
def not_a_pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")
    return path


# --- Kafka connection settings (RECOIL_KAFKA_*, --bootstrap-servers) ---------------------


@pytest.mark.parametrize(
    ("env", "named", "wanted"),
    [
        ({"SASL_USERNAME": "u", "SASL_PASSWORD": "p"}, "SASL_USERNAME", SASL_ONLY),
        ({"SASL_MECHANISM": "PLAIN"}, "SASL_MECHANISM", SASL_ONLY),
        ({"SSL_CAFILE": "/etc/hostname"}, "SSL_CAFILE", "to SSL or SASL_SSL"),
        (
            {"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_MECHANISM": "PLAIN",
             "SASL_USERNAME": "u", "SASL_PASSWORD": "p", "SSL_CAFILE": "/etc/hostname"},
            "SSL_CAFILE",
            "to SASL_SSL,",
        ),
    ],
)  # fmt: skip
def test_security_settings_the_protocol_would_ignore_are_refused(
    env: dict[str, str], named: str, wanted: str
) -> None:
    """A password with PLAINTEXT (the protocol left unset) used to connect without it."""
    with pytest.raises(ConfigError) as info:
        KafkaSettings.from_env("k:9092", env={P + k: v for k, v in env.items()})
    message = str(info.value)
    assert P + named in message and "would ignore" in message
    assert wanted in message, message


def test_a_key_without_its_certificate_is_refused() -> None:
    env = {P + "SECURITY_PROTOCOL": "SSL", P + "SSL_KEYFILE": "/etc/hostname"}
    with pytest.raises(ConfigError, match=f"{P}SSL_KEYFILE .* set {P}SSL_CERTFILE too"):
        KafkaSettings.from_env("k:9092", env=env)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512",
         "SASL_USERNAME": "u", "SASL_PASSWORD": "p", "SSL_CAFILE": "/etc/hostname"},
    ],
)  # fmt: skip
def test_a_childs_environment_carries_exactly_the_parents_settings(env: dict[str, str]) -> None:
    """What the loop hands its children: every variable, so none of the shell's own
    (another cluster's protocol or password) reaches a child of an embedded broker."""
    settings = KafkaSettings.from_env("k:9092", env={P + name: v for name, v in env.items()})
    shell = {P + "SECURITY_PROTOCOL": "SSL", P + "SSL_CAFILE": "/etc/hosts"}
    shell |= {P + "SASL_USERNAME": "x", P + "SASL_PASSWORD": "y"}
    child = KafkaSettings.from_env("k:9092", env={**shell, **settings.env()})
    assert child == settings


@pytest.mark.parametrize(
    "servers", ["kafka://k:9092", "k k:9092", "k:\u0669\u0660\u0669\u0662", "k:9092,h:x"]
)
def test_bootstrap_servers_that_are_not_host_port_are_refused(servers: str) -> None:
    with pytest.raises(ConfigError, match="is not host:port"):
        KafkaSettings(servers)


def test_bootstrap_servers_are_kept_in_canonical_form() -> None:
    """Spaces and empty entries never reach the clients ('' was a kafka-python server)."""
    settings = KafkaSettings(" k1:9092, k2:9093,, ")
    assert settings.bootstrap_servers == "k1:9092,k2:9093"
    assert settings.kafka_python()["bootstrap_servers"] == ["k1:9092", "k2:9093"]
    assert settings.faust_broker() == "kafka://k1:9092;kafka://k2:9093"
    assert KafkaSettings("[::1]:9092").bootstrap_servers == "[::1]:9092"


def test_a_tls_file_that_is_not_pem_fails_at_start(
    tmp_path: Path, not_a_pem: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """It used to pass as a file and fail as an ssl.SSLError traceback at the first client."""
    monkeypatch.setenv(P + "SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv(P + "SSL_CAFILE", str(not_a_pem))
    err = fails_in_one_line(
        ["worker", "--bootstrap-servers", "127.0.0.1:1", "--no-supervise",
         f"--data-dir={tmp_path}", "--web-port=0"],
        capsys,
    )  # fmt: skip
    assert f"cannot load the TLS files {P}SSL_CAFILE={not_a_pem}" in err


# --- the stream worker -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"commit_interval": math.inf}, "commit_interval=inf: must be > 0 seconds, and finite"),
        ({"session_timeout": math.inf}, "session_timeout=inf: must be > 0 seconds, and finite"),
        ({"stall_grace": math.inf}, "stall_grace=inf"),
        ({"web_host": ""}, "web_host is empty"),
        ({"metrics_host": " "}, "metrics_host is empty"),
    ],
)
def test_streams_config_refuses_infinite_durations_and_empty_hosts(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        StreamsConfig(**change)


def test_worker_refuses_a_port_in_use_before_kafka(
    tmp_path: Path, listening: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Faust's bind error came after the topics were made, from a child the supervisor
    then restarted."""
    argv = ["worker", "--bootstrap-servers", "127.0.0.1:1", f"--data-dir={tmp_path}"]
    err = fails_in_one_line([*argv, f"--web-port={listening}"], capsys)
    assert f"--web-host 127.0.0.1 --web-port {listening}" in err
    assert "another process listens there" in err
    err = fails_in_one_line([*argv, "--web-port=0", f"--metrics-host={NOT_LOCAL}",
                             "--metrics-port=0"], capsys)  # fmt: skip
    assert f"--metrics-host {NOT_LOCAL}" in err and "not an address of this machine" in err


# --- shared checks -----------------------------------------------------------------------


def test_check_listen_names_the_flags(listening: int) -> None:
    with pytest.raises(ConfigError, match=r"--h is empty"):
        check_listen(" ", 0, "--h", "--p")
    with pytest.raises(ConfigError, match=rf"--h {BAD_NAME}: not an address .* resolve"):
        check_listen(BAD_NAME, 0, "--h", "--p")
    with pytest.raises(ConfigError, match=rf"--p {listening}: .*pick another --p"):
        check_listen("127.0.0.1", listening, "--h", "--p")
    check_listen("127.0.0.1", 0, "--h", "--p")  # any free port: fine


def test_check_directory_tries_a_directory_the_permission_bits_allow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """To root, os.access allows everything: /proc passed and the command failed at its
    first write (experiment --out /proc/x: a FileNotFoundError traceback)."""
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: True)  # what root is told
    with pytest.raises(ConfigError, match=r"--out /proc/recoil-x cannot be created in /proc"):
        check_directory(Path("/proc/recoil-x"), "--out", "a directory for the results")
    check_directory(tmp_path / "new", "--out", "a directory")
    assert list(tmp_path.iterdir()) == []  # the try leaves nothing behind


# --- serve, broker, simulate, demo, learn, experiment ------------------------------------


def test_serve_refuses_an_empty_host_and_a_history_url_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """'' bound every interface; a history URL without http(s) failed on every request."""
    err = fails_in_one_line(["serve", f"--store={tmp_path}", "--host="], capsys)
    assert "--host is empty" in err
    # a bad IPv6 host was a ValueError traceback; a space was accepted and failed later
    for url in ("127.0.0.1:6066", "ftp://h", "http://", "http://h:99999", "http://[::1",
                "http:// h:6066"):  # fmt: skip
        with pytest.raises(ConfigError, match="--history-url"):
            check_history_url(url)
    check_history_url("")  # histories off
    check_history_url("http://[::1]:6066/")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port 70000 is not a TCP port"),
        (["--port", "-1"], "--port -1 is not a TCP port"),
        (["--host", ""], "--host is empty"),
        (["--host", BAD_NAME], f"--host {BAD_NAME}: not an address"),
        (["--host", NOT_LOCAL], "not an address of this machine"),
        (["--port", "0", "--data-dir", "/etc/hostname"], "--data-dir /etc/hostname is a file"),
    ],
)
def test_broker_refuses_what_the_jvm_would_refuse_later(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in fails_in_one_line(["broker", *argv], capsys)


def test_broker_refuses_a_port_in_use_and_a_recoil_home_that_is_a_file(
    listening: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    err = fails_in_one_line(["broker", "--port", str(listening)], capsys)
    assert "another process listens there" in err
    monkeypatch.setenv("RECOIL_HOME", "/etc/hostname")
    err = fails_in_one_line(["broker", "--port", "0"], capsys)
    assert "RECOIL_HOME /etc/hostname is a file" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--topic", "a/b"], "topic 'a/b': use 1-249 characters"),
        (["--topic="], "topic '': must not be empty (set by --topic)"),
        (["--examples-topic", "a b"], "(set by --examples-topic)"),
        (["--metrics-host="], "metrics_host is empty"),
        (["--metrics-host", BAD_NAME, "--metrics-port", "0"], f"--metrics-host {BAD_NAME}"),
        (["--seed", "-1"], "--seed must be in 0..4294967295"),
        (["--probe-k", "0"], "--probe-k 0: must be >= 1"),
        (["--probe-simulations", "0", "--probe-top-n", "0"],
         "--probe-simulations 0, --probe-top-n 0"),
    ],
)  # fmt: skip
def test_simulate_checks_before_kafka_what_it_used_late(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Names Kafka refused at the first send, a seed numpy refused once connected, probe
    settings refused at the first snapshot, a /metrics address refused as a traceback."""
    err = fails_in_one_line(["simulate", "--bootstrap-servers", "127.0.0.1:1", *argv], capsys)
    assert message in err


def test_simulate_refuses_a_results_file_that_is_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--bootstrap-servers", "127.0.0.1:1", f"--results={tmp_path}"]
    assert f"--results {tmp_path} is a directory" in fails_in_one_line(argv, capsys)


@pytest.mark.parametrize(
    "change",
    [{"duration": math.nan}, {"duration": -5.0}, {"warmup": math.nan}, {"warmup": math.inf}],
)
def test_demo_options_are_finite(change: dict[str, Any]) -> None:
    """A NaN or negative --duration ended the demo at its first check, silently."""
    with pytest.raises(ValueError, match=f"{next(iter(change))} must be a finite number"):
        DemoOptions(**change)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rate": math.nan}, "rate must be a finite number"),
        ({"snapshot_every_seconds": 0.0}, "snapshot_every_seconds must be a finite number > 0"),
        ({"world": "nope"}, "world='nope': choose one of"),
        ({"users": 0}, r"users=0: must be in 1\.\.60"),
        ({"users": 61}, r"users=61: must be in 1\.\.60"),
        ({"repeat_window": 0}, "repeat_window=0"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_the_loop_checks_its_childrens_settings_before_it_starts_them(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """They failed in the children's configs, after the broker and the worker were up."""
    from recoil.loop import LoopConfig

    with pytest.raises(ValueError, match=message):
        LoopConfig(workdir=tmp_path, **change)


def test_learn_refuses_cuda_it_cannot_have() -> None:
    """Lightning's MisconfigurationException was a traceback when the Trainer was made."""
    with pytest.raises(ConfigError, match="--accelerator cuda: this process sees no CUDA"):
        check_accelerator("cuda", 1, gpus=0)
    with pytest.raises(ConfigError, match="--devices 4: this node has 2 visible CUDA"):
        check_accelerator("auto", 4, gpus=2)
    check_accelerator("auto", 4, gpus=0)  # CPU ranks
    check_accelerator("cpu", 4, gpus=2)
    check_accelerator("cuda", 2, gpus=2)


def test_a_sasrec_model_whose_width_the_heads_cannot_split_is_refused() -> None:
    """experiment --model encoder=sasrec,num_heads=3 failed as a traceback after the world
    was simulated; recoil learn --encoder sasrec --embedding-dim 63 likewise."""
    from learner.model import ModelConfig
    from recoil.commands._ablation_args import parse_model

    with pytest.raises(ConfigError, match="embedding_dim 64 is not divisible by num_heads 3"):
        parse_model("encoder=sasrec,num_heads=3")
    assert ModelConfig(encoder="gru", embedding_dim=63).embedding_dim == 63  # gru: no heads
