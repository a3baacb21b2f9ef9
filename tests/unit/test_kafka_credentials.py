"""SASL/SSL reach Faust's driver intact, and ``RECOIL_BOOTSTRAP_SERVERS`` is the fallback.

The stream worker hands ``KafkaSettings.faust_credentials()`` to Faust, whose aiokafka
driver turns it into client keywords with ``credentials_to_aiokafka_auth``. That
translation must give the same security keywords as ``KafkaSettings.aiokafka()``
(what the learner and simulator use directly), for every protocol. Mutual TLS uses
a throwaway self-signed certificate made with ``openssl``.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from prometheus_client import CollectorRegistry

from recoil.broker.args import DEFAULT_BOOTSTRAP
from recoil.cli import build_parser
from recoil.core.kafka_settings import KafkaSettings
from streams.app import build_app
from streams.config import StreamsConfig
from streams.metrics import StreamMetrics

SECURITY_KEYS = ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                 "sasl_plain_password")  # fmt: skip


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    # openssl ships with the machine (Debian's openssl); without it the TLS claims would go
    # unchecked, so its absence fails loudly instead of skipping.
    assert shutil.which("openssl") is not None, "openssl is missing: apt-get install openssl"
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _through_faust(settings: KafkaSettings) -> dict[str, Any]:
    return dict(credentials_to_aiokafka_auth(settings.faust_credentials()))


def _ca_subjects(context: ssl.SSLContext) -> list[dict[str, str]]:
    """The subjects of the CA certificates ``context`` trusts, as {field: value}."""
    subjects = []
    for cert in context.get_ca_certs():
        rdns: Any = cert["subject"]  # ((("commonName", "x"),), ...)
        subjects.append({key: value for rdn in rdns for key, value in rdn})
    return subjects


def _security(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in SECURITY_KEYS if k in kwargs}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_through_faust(mechanism: str) -> None:
    env = {
        "RECOIL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "RECOIL_KAFKA_SASL_MECHANISM": mechanism.lower(),
        "RECOIL_KAFKA_SASL_USERNAME": "alice",
        "RECOIL_KAFKA_SASL_PASSWORD": "s3cret",
    }
    settings = KafkaSettings.from_env("k:9092", env=env)
    credentials = settings.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    via_faust = _through_faust(settings)
    assert _security(via_faust) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "alice",
        "sasl_plain_password": "s3cret",
    }
    assert via_faust["ssl_context"] is None
    assert _security(via_faust) == _security(settings.aiokafka())


def test_sasl_ssl_through_faust_carries_the_ca(tmp_path: Path) -> None:
    ca, _ = _self_signed(tmp_path, "recoil-test-ca")
    settings = KafkaSettings(
        "k:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        sasl_username="bob", sasl_password="pw", ssl_cafile=str(ca),
    )  # fmt: skip
    via_faust = _through_faust(settings)
    assert _security(via_faust) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "bob",
        "sasl_plain_password": "pw",
    }
    context = via_faust["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert _ca_subjects(context) == [{"commonName": "recoil-test-ca"}]


def test_mutual_tls_through_faust(tmp_path: Path) -> None:
    ca, _ = _self_signed(tmp_path, "recoil-test-ca")
    cert, key = _self_signed(tmp_path, "recoil-client")
    settings = KafkaSettings.from_env(
        "k:9093",
        env={
            "RECOIL_KAFKA_SECURITY_PROTOCOL": "ssl",
            "RECOIL_KAFKA_SSL_CAFILE": str(ca),
            "RECOIL_KAFKA_SSL_CERTFILE": str(cert),
            "RECOIL_KAFKA_SSL_KEYFILE": str(key),
        },
    )
    assert isinstance(settings.faust_credentials(), faust.SSLCredentials)
    via_faust = _through_faust(settings)
    assert via_faust["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in via_faust
    context = via_faust["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert _ca_subjects(context) == [{"commonName": "recoil-test-ca"}]
    # the key file is really used: a certificate with somebody else's key is refused
    _, other_key = _self_signed(tmp_path, "someone-else")
    mismatched = KafkaSettings(
        "k:9093", security_protocol="SSL", ssl_cafile=str(ca),
        ssl_certfile=str(cert), ssl_keyfile=str(other_key),
    )  # fmt: skip
    with pytest.raises(ssl.SSLError):
        mismatched.faust_credentials()


def test_plaintext_through_faust_has_no_credentials() -> None:
    settings = KafkaSettings("k:9092")
    assert settings.faust_credentials() is None
    assert _through_faust(settings) == {"security_protocol": "PLAINTEXT"}


def test_the_stream_worker_app_is_built_with_the_credentials(tmp_path: Path) -> None:
    settings = KafkaSettings(
        "k1:9092,k2:9092", security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
        sasl_username="carol", sasl_password="pw",
    )  # fmt: skip
    config = StreamsConfig(data_dir=tmp_path, web_port=16066)  # not bound: never started
    worker = build_app(config, settings, StreamMetrics(CollectorRegistry()), partitions=4)
    credentials = worker.app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("carol", "pw")
    assert [str(u) for u in worker.app.conf.broker] == ["kafka://k1:9092", "kafka://k2:9092"]


KAFKA_COMMANDS = ["worker", "learn", "simulate", "replay"]
REQUIRED = {"learn": ["--store", "s"], "replay": ["events.jsonl"]}


def _bootstrap(command: str, *extra: str) -> str:
    args = build_parser().parse_args([command, *REQUIRED.get(command, []), *extra])
    return str(args.bootstrap_servers)


@pytest.mark.parametrize("command", KAFKA_COMMANDS)
def test_bootstrap_servers_fall_back_to_the_environment(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECOIL_BOOTSTRAP_SERVERS", raising=False)
    assert _bootstrap(command) == DEFAULT_BOOTSTRAP == "127.0.0.1:9092"
    monkeypatch.setenv("RECOIL_BOOTSTRAP_SERVERS", "kafka-a:9092,kafka-b:9093")
    assert _bootstrap(command) == "kafka-a:9092,kafka-b:9093"
    # the flag wins over the environment
    assert _bootstrap(command, "--bootstrap-servers", "kafka-c:9094") == "kafka-c:9094"


def test_demo_uses_the_environment_or_else_its_own_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RECOIL_BOOTSTRAP_SERVERS", raising=False)
    assert build_parser().parse_args(["demo"]).bootstrap_servers is None  # embedded broker
    monkeypatch.setenv("RECOIL_BOOTSTRAP_SERVERS", "kafka-a:9092")
    assert build_parser().parse_args(["demo"]).bootstrap_servers == "kafka-a:9092"
