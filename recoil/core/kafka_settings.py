"""Kafka connection settings shared by every process, with SASL/SSL passed through.

Every command takes ``--bootstrap-servers``; security settings come from the
environment so secrets stay out of command lines:

    RECOIL_KAFKA_SECURITY_PROTOCOL   PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    RECOIL_KAFKA_SASL_MECHANISM      PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    RECOIL_KAFKA_SASL_USERNAME / RECOIL_KAFKA_SASL_PASSWORD
    RECOIL_KAFKA_SSL_CAFILE / RECOIL_KAFKA_SSL_CERTFILE / RECOIL_KAFKA_SSL_KEYFILE

Bad settings fail at start with a message that says what to fix.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recoil.core.errors import ConfigError

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ENV_PREFIX = "RECOIL_KAFKA_"


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach a Kafka cluster."""

    bootstrap_servers: str  # comma-separated host:port list
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None  # required for SASL_* protocols
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None  # CA bundle that signed the brokers' certificates
    ssl_certfile: str | None = None  # client certificate for mutual TLS
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        servers = [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]
        if not servers:
            raise ConfigError("bootstrap servers are empty: pass --bootstrap-servers host:port")
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(
                    f"bootstrap server {server!r} is not host:port (e.g. kafka-1:9092)"
                )
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"{ENV_PREFIX}SECURITY_PROTOCOL={self.security_protocol!r} is not one of "
                f"{', '.join(SECURITY_PROTOCOLS)}"
            )
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(
                    f"{ENV_PREFIX}SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)} "
                    f"for {self.security_protocol} (got {self.sasl_mechanism!r})"
                )
            if not self.sasl_username or self.sasl_password is None:
                raise ConfigError(
                    f"{self.security_protocol} needs {ENV_PREFIX}SASL_USERNAME and "
                    f"{ENV_PREFIX}SASL_PASSWORD"
                )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{ENV_PREFIX}{name.upper()}={path!r}: no such file")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol.endswith("SSL")

    @classmethod
    def from_env(
        cls, bootstrap_servers: str, env: Mapping[str, str] | None = None
    ) -> KafkaSettings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name)
            return value if value else None

        return cls(
            bootstrap_servers=bootstrap_servers,
            security_protocol=(get("SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            sasl_mechanism=(m.upper() if (m := get("SASL_MECHANISM")) else None),
            sasl_username=get("SASL_USERNAME"),
            sasl_password=get("SASL_PASSWORD"),
            ssl_cafile=get("SSL_CAFILE"),
            ssl_certfile=get("SSL_CERTFILE"),
            ssl_keyfile=get("SSL_KEYFILE"),
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_ssl:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer/KafkaConsumer/KafkaAdminClient."""
        return self._client_kwargs(self.bootstrap_servers.split(","))

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's AIOKafkaProducer/AIOKafkaConsumer."""
        return self._client_kwargs(self.bootstrap_servers)

    def librdkafka(self) -> dict[str, str]:
        """Configuration properties for confluent-kafka (librdkafka) clients. Without a
        CA bundle librdkafka uses the system's, as ``ssl.create_default_context`` does."""
        config = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.uses_sasl:
            config |= {
                "sasl.mechanism": str(self.sasl_mechanism),
                "sasl.username": str(self.sasl_username),
                "sasl.password": str(self.sasl_password),
            }
        if self.uses_ssl:
            files = {
                "ssl.ca.location": self.ssl_cafile,
                "ssl.certificate.location": self.ssl_certfile,
                "ssl.key.location": self.ssl_keyfile,
            }
            config |= {key: path for key, path in files.items() if path}
        return config

    def _client_kwargs(self, bootstrap_servers: str | list[str]) -> dict[str, Any]:
        # Both clients take the same security keywords; only the server list's form differs.
        kwargs: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.uses_sasl:
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        if self.uses_ssl:
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs

    def faust_broker(self) -> str:
        """The broker URL list in Faust's form: ``kafka://h1:9092;kafka://h2:9092``."""
        return ";".join(f"kafka://{s.strip()}" for s in self.bootstrap_servers.split(","))

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` for the configured security protocol, or None."""
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context(),
            )
        if self.uses_ssl:
            return faust.SSLCredentials(self.ssl_context())
        return None
