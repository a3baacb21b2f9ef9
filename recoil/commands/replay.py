"""``recoil replay FILE``: produce a logged event file into Kafka, keyed by user id, in order."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recoil.commands._kafka_args import add_kafka_arguments, kafka_settings


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="replay a logged event file (JSONL, CSV/TSV, KuaiRand) into the interactions topic",
        description="Read a logged event file and produce every event to Kafka keyed by its "
        "user id, preserving each user's order, with a progress bar. JSON Lines in the event "
        "schema, or CSV/TSV with --map (KuaiRand's header is recognised without one).",
    )
    parser.add_argument("file", type=Path, help="the event log")
    add_kafka_arguments(parser)
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None,
                      help="replay at X times the logged pace (1 = real time)")  # fmt: skip
    pace.add_argument("--as-fast-as-possible", action="store_true",
                      help="ignore the logged timing (the default)")  # fmt: skip
    parser.add_argument("--topic", default="interactions")
    parser.add_argument("--map", default=None, metavar="FIELD=COLUMN,...",
                        help="column mapping of a CSV/TSV log, e.g. "
                        "'user_id=uid,item_id=vid,timestamp=ts,time_unit=ms', or 'kuairand' "
                        "(fields of simulator.logs.ColumnMapping)")  # fmt: skip
    parser.add_argument("--partitions", type=int, default=4,
                        help="partitions if the topic has to be created")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="stop after N events")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import itertools

    from tqdm import tqdm

    from recoil.kafka_settings import ConfigError
    from recoil.topics import ensure_topics
    from simulator.logs import parse_mapping, read_event_log
    from streams.replay import replay_to_kafka

    if args.speed is not None and not args.speed > 0:
        raise ConfigError(f"--speed {args.speed}: must be > 0 (or use --as-fast-as-possible)")
    if args.limit is not None and args.limit < 0:
        raise ConfigError(f"--limit {args.limit}: must be >= 0")
    if not args.file.is_file():
        raise ConfigError(f"{args.file}: no such file")
    try:
        mapping = parse_mapping(args.map) if args.map else None
    except ValueError as exc:
        raise ConfigError(f"--map {args.map!r}: {exc}") from exc
    settings = kafka_settings(args)
    ensure_topics(settings, [args.topic], partitions=args.partitions)
    events = read_event_log(args.file, mapping)
    if args.limit is not None:
        events = itertools.islice(events, args.limit)
    with tqdm(desc=f"replay -> {args.topic}", unit="ev", unit_scale=True) as bar:
        try:
            stats = asyncio.run(
                replay_to_kafka(events, settings, args.topic, args.speed, bar.update)
            )
        except ValueError as exc:  # a bad row in the file: the reader names file and line
            print(f"recoil replay: {exc}")
            return 1
    print(f"replayed {stats.events} events to {args.topic} in {stats.seconds:.1f}s "
          f"({stats.events_per_second:,.0f} events/s)")  # fmt: skip
    return 0
