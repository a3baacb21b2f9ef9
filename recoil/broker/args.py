"""The Kafka options every Kafka-facing subcommand shares."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from recoil.core.kafka_settings import KafkaSettings

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"  # where `recoil broker` listens by default


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("RECOIL_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
        help="Kafka bootstrap servers, host:port[,host:port] (env RECOIL_BOOTSTRAP_SERVERS; "
        f"default {DEFAULT_BOOTSTRAP}, the embedded `recoil broker`). SASL/SSL settings come "
        "from RECOIL_KAFKA_* variables (see README).",
    )


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    """The cluster of ``--bootstrap-servers`` with the RECOIL_KAFKA_* settings, checked
    before any client is made: its TLS files must load, or the first connection fails
    with an ``ssl.SSLError`` traceback."""
    settings = KafkaSettings.from_env(args.bootstrap_servers)
    settings.check_tls_files()
    return settings


def add_optional_kafka_arguments(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--bootstrap-servers`` of a command that starts its own broker when none is given."""
    parser.add_argument(
        "--bootstrap-servers",
        default=default,
        help="use this Kafka cluster instead of starting the embedded broker",
    )


@contextlib.contextmanager
def given_or_embedded_kafka(
    args: argparse.Namespace, workdir: Path | None = None
) -> Iterator[KafkaSettings]:
    """The cluster of ``--bootstrap-servers``, or else an embedded broker (files in
    ``workdir``, default a temporary directory) that runs until the block ends."""
    if args.bootstrap_servers:
        yield kafka_settings(args)
        return
    from recoil.broker import EmbeddedKafka

    print("starting the embedded Apache Kafka broker ...", flush=True)
    with EmbeddedKafka(workdir=workdir) as broker:
        yield KafkaSettings(broker.bootstrap_servers)
