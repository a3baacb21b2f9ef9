"""``recoil broker``: run the embedded Apache Kafka broker in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from recoil.core.settings import add_command


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "broker",
        run,
        help="run a single-node Apache Kafka broker (KRaft) on 127.0.0.1 until Ctrl-C",
        description="Resolve Apache Kafka from Maven Central (once, cached), format KRaft "
        "storage in a temporary directory (or in --data-dir, once: a later start on the same "
        "directory reuses its cluster id and data) and run one combined broker+controller.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9092, help="client port (0 = any free)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep data here; starting again on it keeps topics, records "
        "and committed offsets (default: a temporary directory, removed on "
        "exit)",
    )


def run(args: argparse.Namespace) -> int:
    from recoil.broker import EmbeddedKafka

    broker = EmbeddedKafka(host=args.host, port=args.port or None, workdir=args.data_dir)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # A parent may hand down SIGINT ignored or blocked (both survive exec); Ctrl-C must
    # stop the broker whatever started this process.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        broker.start()
        print(f"bootstrap servers: {broker.bootstrap_servers}", flush=True)
        print(f"broker log: {broker.log_file}  (Ctrl-C to stop)", flush=True)
        status = broker.wait()
        print(f"broker exited with status {status}:\n{broker.log_tail(20)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping broker", flush=True)
        return 0
    finally:
        broker.stop()
