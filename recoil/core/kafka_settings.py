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

import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recoil.core.errors import ConfigError

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ENV_PREFIX = "RECOIL_KAFKA_"
# A host name or IPv4 address (letters, digits, '.', '-', '_'), or an IPv6 one in brackets.
# The name's dot-separated labels have 1-63 characters: aiokafka's IDNA codec refuses an
# empty or a longer one ("a..b") with a UnicodeError traceback.
_HOST = re.compile(r"(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?|\[[0-9A-Fa-f:.]+\]")
SASL_FIELDS = ("sasl_mechanism", "sasl_username", "sasl_password")
SSL_FIELDS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


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
            _check_server(server)
        # Canonical form: kafka-python gets the list split on ',', so "a:1, b:2," would
        # hand it " b:2" and "" (and Faust a "kafka://" URL with no host).
        object.__setattr__(self, "bootstrap_servers", ",".join(servers))
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
        for name in SSL_FIELDS:
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                problem = "not a file" if Path(path).exists() else "no such file"
                raise ConfigError(f"{ENV_PREFIX}{name.upper()}={path!r}: {problem}")
        # Credentials or certificates the protocol would not use are a protocol left at
        # its default by mistake: connecting without them would send no password, or
        # trust any server, with nothing said.
        unused = [
            f"{ENV_PREFIX}{name.upper()}"
            for names, used in ((SASL_FIELDS, self.uses_sasl), (SSL_FIELDS, self.uses_ssl))
            if not used
            for name in names
            if getattr(self, name) is not None
        ]
        if unused:
            sasl = any(getattr(self, name) is not None for name in SASL_FIELDS)
            tls = any(getattr(self, name) is not None for name in SSL_FIELDS)
            wanted = " or ".join(
                p
                for p in SECURITY_PROTOCOLS
                if (not sasl or p.startswith("SASL_")) and (not tls or p.endswith("SSL"))
            )
            raise ConfigError(
                f"{', '.join(unused)} given, but {ENV_PREFIX}SECURITY_PROTOCOL="
                f"{self.security_protocol} would ignore {'them' if len(unused) > 1 else 'it'}: "
                f"set {ENV_PREFIX}SECURITY_PROTOCOL to {wanted}, or unset "
                f"{'them' if len(unused) > 1 else 'it'}"
            )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigError(
                f"{ENV_PREFIX}SSL_KEYFILE is the key of a client certificate: set "
                f"{ENV_PREFIX}SSL_CERTFILE too (or unset {ENV_PREFIX}SSL_KEYFILE)"
            )

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

    def env(self) -> dict[str, str]:
        """Every RECOIL_KAFKA_* variable for a child process that must use exactly these
        settings: unset ones as '', which ``from_env`` reads as unset. A child otherwise
        inherits the shell's variables, which name another cluster's protocol and
        credentials when the parent started its own (embedded, PLAINTEXT) broker."""
        fields = ("security_protocol", *SASL_FIELDS, *SSL_FIELDS)
        return {f"{ENV_PREFIX}{name.upper()}": getattr(self, name) or "" for name in fields}

    def check_tls_files(self) -> None:
        """ConfigError naming the variables unless the CA bundle, certificate and key load.

        Not in ``__post_init__``: a settings object is also built from files that are
        not PEM (tests), and only a process about to connect needs them usable. Without
        this a file that is not PEM fails as an ``ssl.SSLError`` traceback when the first
        client is made."""
        if not self.uses_ssl:
            return
        try:
            self.ssl_context()
        except (ssl.SSLError, OSError) as exc:
            given = [
                f"{ENV_PREFIX}{name.upper()}={getattr(self, name)}"
                for name in SSL_FIELDS
                if getattr(self, name) is not None
            ]
            raise ConfigError(
                f"cannot load the TLS files {', '.join(given) or '(system CA bundle)'}: "
                f"{exc}; give PEM files (the key unencrypted, and the one of the certificate)"
            ) from None

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


def _check_server(server: str) -> None:
    """ConfigError unless ``server`` is ``host:port`` (a port in 1..65535, ASCII digits)."""
    host, _, port = server.rpartition(":")
    # str.isdigit() is true of other scripts' digits too, which int() reads: "h:٩٠٩٢"
    valid_port = port.isascii() and port.isdigit() and 0 < int(port) < 65536
    if not valid_port or not (_HOST.fullmatch(host) or _is_ipv6(host)):
        hint = " (no scheme: host:port, not a URL)" if "://" in server else ""
        raise ConfigError(f"bootstrap server {server!r} is not host:port (e.g. kafka-1:9092){hint}")


def _is_ipv6(host: str) -> bool:
    """An IPv6 address written without brackets (``::1:9092`` reads as ``::1`` and 9092)."""
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True
