"""``recoil worker``: run a stream worker (Faust agents, history table, history view)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recoil.broker.args import add_kafka_arguments, kafka_settings


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "worker",
        help="run a stream worker: interactions -> training examples, history table, DLQ",
        description="Validate interaction events, keep each user's recent history in a "
        "changelogged Faust table, label events and emit training examples. Start any "
        "number of workers with the same --app-id: partitions spread across them. "
        "See docs/streams.md for guarantees and rules.",
    )
    add_kafka_arguments(parser)
    parser.add_argument("--app-id", default="recoil-streams",
                        help="consumer group / transactional-id / changelog prefix")  # fmt: skip
    parser.add_argument("--input-topic", default="interactions")
    parser.add_argument("--output-topic", default="training-examples")
    parser.add_argument("--dlq-topic", default="interactions.dlq")
    parser.add_argument("--store", default="rocksdb", choices=["rocksdb", "memory"],
                        help="history table store (default rocksdb)")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=Path("recoil-data/streams"),
                        help="RocksDB files go to DATA_DIR/APP_ID")  # fmt: skip
    parser.add_argument("--history-length", type=int, default=50,
                        help="history items kept per user and put into each example")  # fmt: skip
    parser.add_argument("--label", action="append", default=[], metavar="NAME=VALUE",
                        help="override a labelling setting of recoil.core.labels.LabelConfig, e.g. "
                        "--label skip_weight=0.5 (repeatable)")  # fmt: skip
    parser.add_argument("--dedupe-window", type=int, default=100,
                        help="recent event ids remembered per user for dedupe")  # fmt: skip
    parser.add_argument("--state-cache-users", type=int, default=10_000,
                        help="decoded user states kept in memory (about 10 KB each)")  # fmt: skip
    parser.add_argument("--processing-guarantee", default="exactly_once",
                        choices=["exactly_once", "at_least_once"])  # fmt: skip
    parser.add_argument("--partitions", type=int, default=4,
                        help="partitions of topics the worker has to create")  # fmt: skip
    parser.add_argument("--replication-factor", type=int, default=1,
                        help="replicas of topics it creates (changelog too)")  # fmt: skip
    parser.add_argument("--web-host", default="127.0.0.1", help="history view bind address")
    parser.add_argument("--web-port", type=int, default=6066,
                        help="history view port (0 = any free port; printed)")  # fmt: skip
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve /metrics on HOST:PORT (default: off; 0 = any free port; "
                        "the bound address is printed)")  # fmt: skip
    parser.add_argument("--metrics-host", default="127.0.0.1", help="/metrics bind address")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-timeout", type=float, default=0.05,
                        help="seconds a partial batch waits")  # fmt: skip
    parser.add_argument("--commit-interval", type=float, default=1.0,
                        help="seconds between commits (= transaction length)")  # fmt: skip
    parser.add_argument("--session-timeout", type=float, default=10.0,
                        help="consumer group session timeout, seconds")  # fmt: skip
    parser.add_argument("--heartbeat-interval", type=float, default=1.0)
    parser.add_argument("--producer-linger", type=float, default=0.005,
                        help="seconds a send waits to share a produce request")  # fmt: skip
    parser.add_argument("--hole-grace", type=float, default=2.0,
                        help="seconds a commit hole lasts before the broker is asked")  # fmt: skip
    parser.add_argument("--no-supervise", dest="supervise", action="store_false",
                        help="run the Faust worker in this process; by default a supervisor "
                        "restarts it after a deliberate crash (see docs/streams.md)")  # fmt: skip
    parser.add_argument("--no-offset-guard", dest="offset_guard", action="store_false",
                        help="commit like stock Faust (to reproduce faust #596/#606)")  # fmt: skip
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> Any:
    """The validated StreamsConfig for parsed arguments (ConfigError says what to fix)."""
    from streams.config import StreamsConfig, label_config

    return StreamsConfig(
        app_id=args.app_id,
        input_topic=args.input_topic,
        output_topic=args.output_topic,
        dlq_topic=args.dlq_topic,
        store=args.store,
        data_dir=args.data_dir,
        labels=label_config(args.history_length, args.label),
        dedupe_window=args.dedupe_window,
        state_cache_users=args.state_cache_users,
        processing_guarantee=args.processing_guarantee,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        web_host=args.web_host,
        web_port=args.web_port,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        producer_linger=args.producer_linger,
        hole_grace=args.hole_grace,
        batch_size=args.batch_size,
        batch_timeout=args.batch_timeout,
        commit_interval=args.commit_interval,
        session_timeout=args.session_timeout,
        heartbeat_interval=args.heartbeat_interval,
        offset_guard=args.offset_guard,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    settings = kafka_settings(args)
    if args.supervise:
        # Port 0 is resolved here, once: every restart of the child serves on the same port.
        config = config.with_free_ports()
        from streams.supervisor import supervise, worker_command

        return supervise(worker_command(settings, config, supervised=False,
                                        log_level=args.log_level))  # fmt: skip
    from streams.worker import run_worker

    return run_worker(config, settings)
