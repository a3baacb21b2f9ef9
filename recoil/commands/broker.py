"""``recoil broker``: run the embedded Apache Kafka broker in the foreground."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from recoil.broker.jars import recoil_home
from recoil.core.checks import check_listen
from recoil.core.dirs import check_directory
from recoil.core.errors import ConfigError
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


def check_args(args: argparse.Namespace) -> None:
    """Everything the JVM would refuse, refused now in one line: its own errors come
    seconds later, as a Python traceback around Kafka's log (or Maven's)."""
    if not 0 <= args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a TCP port: give 1..65535, or 0 for any")
    check_listen(args.host, args.port, "--host", "--port")
    try:  # the broker's ports are picked, and its listeners written, for IPv4
        socket.getaddrinfo(args.host, args.port, family=socket.AF_INET)
    except (OSError, UnicodeError):
        raise ConfigError(
            f"--host {args.host}: the embedded broker listens on IPv4 only; give an IPv4 "
            "address (127.0.0.1, or 0.0.0.0 for every interface) or a name that has one"
        ) from None
    if args.data_dir is not None:
        check_directory(args.data_dir, "--data-dir", "a directory for the broker's data")
    home = recoil_home()  # Kafka's jars are cached there
    check_directory(home, "RECOIL_HOME", "a directory for recoil's caches")


def run(args: argparse.Namespace) -> int:
    from recoil.broker import EmbeddedKafka

    check_args(args)
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
