"""Fixtures of the unit tests that meet a Kafka address where no broker listens."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import kafka
import pytest


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound once by the OS, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def quick_bootstrap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """kafka-python gives up bootstrapping after 30 s; 1.5 s here, to keep the real
    failure path fast."""
    real = kafka.KafkaAdminClient

    def admin(**kwargs: Any) -> Any:
        return real(**kwargs, bootstrap_timeout_ms=1500)

    monkeypatch.setattr(kafka, "KafkaAdminClient", admin)
    yield
