"""Kafka settings: SASL/SSL pass through from the environment; bad settings say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoil.core.errors import ConfigError
from recoil.core.kafka_settings import KafkaSettings


def test_plaintext_defaults() -> None:
    settings = KafkaSettings.from_env("k1:9092,k2:9093", env={})
    assert settings.kafka_python() == {
        "bootstrap_servers": ["k1:9092", "k2:9093"],
        "security_protocol": "PLAINTEXT",
    }
    assert settings.faust_broker() == "kafka://k1:9092;kafka://k2:9093"
    assert settings.faust_credentials() is None


def test_sasl_passes_through() -> None:
    env = {
        "RECOIL_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
        "RECOIL_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "RECOIL_KAFKA_SASL_USERNAME": "alice",
        "RECOIL_KAFKA_SASL_PASSWORD": "s3cret",
    }
    settings = KafkaSettings.from_env("k:9092", env=env)
    kwargs = settings.aiokafka()
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "alice"
    assert kwargs["sasl_plain_password"] == "s3cret"
    assert settings.kafka_python()["sasl_plain_password"] == "s3cret"


@pytest.mark.parametrize(
    ("servers", "env", "message"),
    [
        ("", {}, "--bootstrap-servers"),
        ("kafka", {}, "not host:port"),
        ("k:99999", {}, "not host:port"),
        ("k:9092", {"RECOIL_KAFKA_SECURITY_PROTOCOL": "TLS"}, "SECURITY_PROTOCOL"),
        ("k:9092", {"RECOIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_MECHANISM"),
        (
            "k:9092",
            {"RECOIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RECOIL_KAFKA_SASL_MECHANISM": "PLAIN"},
            "SASL_USERNAME",
        ),
        ("k:9092", {"RECOIL_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "no such file"),
    ],
)
def test_bad_settings_fail_with_what_to_fix(
    servers: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        KafkaSettings.from_env(servers, env=env)


def test_ssl_context_loads_ca(tmp_path: Path) -> None:
    import ssl

    ca = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    settings = KafkaSettings("k:9093", security_protocol="SSL", ssl_cafile=str(ca))
    assert isinstance(settings.kafka_python()["ssl_context"], ssl.SSLContext)


def test_librdkafka_properties_carry_sasl_and_tls_files(tmp_path: Path) -> None:
    """The learner's consumer (librdkafka) gets the same security settings, in its
    property names; librdkafka itself accepts them (it refuses unknown or ill-typed
    properties, and SASL/SSL ones when built without them)."""
    from learner.example_consumer import RdKafkaConsumer

    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("not a certificate")
    # (environment variable, librdkafka property, value)
    mapping = [
        ("SECURITY_PROTOCOL", "security.protocol", "SASL_SSL"),
        ("SASL_MECHANISM", "sasl.mechanism", "SCRAM-SHA-256"),
        ("SASL_USERNAME", "sasl.username", "alice"),
        ("SASL_PASSWORD", "sasl.password", "s3cret"),
        ("SSL_CAFILE", "ssl.ca.location", str(files["ca"])),
        ("SSL_CERTFILE", "ssl.certificate.location", str(files["cert"])),
        ("SSL_KEYFILE", "ssl.key.location", str(files["key"])),
    ]
    env = {f"RECOIL_KAFKA_{name}": value for name, _, value in mapping}
    properties = KafkaSettings.from_env("k1:9092,k2:9093", env=env).librdkafka()
    assert properties == {"bootstrap.servers": "k1:9092,k2:9093"} | {
        key: value for _, key, value in mapping
    }
    plain = KafkaSettings("k:9092").librdkafka()
    assert plain == {"bootstrap.servers": "k:9092", "security.protocol": "PLAINTEXT"}
    # librdkafka loads the PEM files when it is created (these are not real ones); the
    # rest must pass its own checks
    without_files = {k: v for k, v in properties.items() if not k.startswith("ssl.")}
    RdKafkaConsumer("examples", without_files, {"group.id": "g"}).close()
