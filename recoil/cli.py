"""The ``recoil`` command: one entry point, one subcommand per job.

Each module in :mod:`recoil.commands` contributes subcommands through a
``register(subparsers)`` function; heavy imports happen inside the handlers so
``recoil --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

from recoil import __version__, commands
from recoil.core.dirs import check_directory
from recoil.core.errors import ConfigError
from recoil.core.settings import CommandParser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recoil",
        description="A near-real-time sequential recommender that learns from negative feedback.",
    )
    parser.add_argument("--version", action="version", version=f"recoil {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=CommandParser
    )
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Kafka clients log every connection at INFO; keep their warnings and errors only.
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # kafka-python 3 warns whenever one of its tasks holds its poll loop past 100 ms,
    # which every busy 2-core machine does (the demo printed it at start-up); its errors
    # still show.
    logging.getLogger("kafka.net.selector").setLevel(max(logging.ERROR, logging.getLogger().level))
    try:
        out = getattr(args, "out", None)
        if isinstance(out, Path):  # every command's results directory, before the work
            check_directory(out, "--out", "a directory for the results")
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        parser.exit(2, f"recoil {args.command}: configuration error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
