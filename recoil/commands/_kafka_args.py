"""The Kafka options every Kafka-facing subcommand shares."""

from __future__ import annotations

import argparse
import os

from recoil.kafka_settings import KafkaSettings

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
    return KafkaSettings.from_env(args.bootstrap_servers)
