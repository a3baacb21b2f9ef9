"""``recoil worker``: run a stream worker (Faust agents, history table, history view).

Its flags are the settings of :class:`streams.config.StreamsConfig` (plus the Kafka
connection and ``--no-supervise``): defaults and help texts are defined there.
"""

from __future__ import annotations

import argparse
from typing import Any

from recoil.broker.args import add_kafka_arguments, kafka_settings
from recoil.core.checks import check_listen
from recoil.core.dirs import check_directory
from recoil.core.settings import add_arguments, add_command, from_args


def register(sub: Any) -> None:
    from streams.config import StreamsConfig  # plain dataclasses: cheap at CLI start-up

    parser = add_command(
        sub,
        "worker",
        run,
        help="run a stream worker: interactions -> training examples, history table, DLQ",
        description="Validate interaction events, keep each user's recent history in a "
        "changelogged Faust table, label events and emit training examples. Start any "
        "number of workers with the same --app-id: partitions spread across them. "
        "See docs/streams.md for guarantees and rules.",
    )
    add_kafka_arguments(parser)
    add_arguments(parser, StreamsConfig)
    parser.add_argument(
        "--no-supervise",
        dest="supervise",
        action="store_false",
        help="run the Faust worker in this process; by default a supervisor restarts it "
        "after a deliberate crash (see docs/streams.md)",
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """The validated StreamsConfig for parsed arguments (ConfigError says what to fix)."""
    from streams.config import StreamsConfig

    return from_args(StreamsConfig, args)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    check_directory(config.data_dir, "--data-dir", "a directory for the RocksDB tables")
    # Before Kafka and the child: a bad address or a taken port otherwise shows as the
    # child's traceback after the topics are made, and the supervisor restarts it.
    check_listen(config.web_host, config.web_port, "--web-host", "--web-port")
    if config.metrics_port is not None:
        check_listen(config.metrics_host, config.metrics_port, "--metrics-host", "--metrics-port")
    settings = kafka_settings(args)
    if args.supervise:
        # Port 0 is resolved here, once: every restart of the child serves on the same port.
        config = config.with_free_ports()
        from streams.supervisor import supervise, worker_command

        argv = worker_command(settings, config, supervised=False, log_level=args.log_level)
        return supervise(argv)
    from streams.worker import run_worker

    return run_worker(config, settings)
