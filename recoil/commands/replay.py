"""``recoil replay FILE``: produce a logged event file into Kafka, keyed by user id, in time order.

Events are sorted by timestamp (stable on ties) before they are sent, because the
stream workers drop an event older than its user's newest as ``out_of_order``;
``--keep-file-order`` sends them as the file has them and warns how many the
worker will drop (``streams.replay`` explains both).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recoil.broker.args import add_kafka_arguments, kafka_settings
from recoil.commands._log_args import add_map_argument
from recoil.core.settings import add_command
from recoil.core.topics import INTERACTIONS
from streams.replay import MAX_SORT_EVENTS

if TYPE_CHECKING:
    from recoil.core.events import InteractionEvent


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "replay",
        run,
        help="replay a logged event file (JSONL, CSV/TSV, KuaiRand) into the interactions topic",
        description="Read a logged event file, sort its events by timestamp (stable on "
        "ties, so every user's events are in time order) and produce each to Kafka keyed by "
        "its user id, with a progress bar. JSON Lines in the event schema, or CSV/TSV or "
        "JSON Lines with --map (KuaiRand's header is recognised without one).",
    )
    parser.add_argument("file", type=Path, help="the event log")
    add_kafka_arguments(parser)
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=float,
        default=None,
        help="replay at X times the logged pace (1 = real time)",
    )
    pace.add_argument(
        "--as-fast-as-possible", action="store_true", help="ignore the logged timing (the default)"
    )
    parser.add_argument("--topic", default=INTERACTIONS)
    add_map_argument(parser)
    parser.add_argument(
        "--partitions", type=int, default=4, help="partitions if the topic has to be created"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="replay only the first N events of the file"
    )
    order = parser.add_mutually_exclusive_group()
    order.add_argument(
        "--keep-file-order",
        action="store_true",
        help="send events in file order, unsorted; the worker drops every event "
        "older than an earlier one of its user (replay says how many)",
    )
    order.add_argument(
        "--max-sort-events",
        type=int,
        default=MAX_SORT_EVENTS,
        metavar="N",
        help="refuse to sort a log of more than N events in memory (about "
        "0.5 KiB each; default %(default)s); sort such a file by user and time "
        "yourself and pass --keep-file-order",
    )


def run(args: argparse.Namespace) -> int:
    """Check the arguments and the file, then connect: a bad file or flag is reported as
    such whether or not a broker is there."""
    import asyncio
    import dataclasses
    import itertools

    from tqdm import tqdm

    from recoil.core.errors import ConfigError
    from recoil.core.topics import MAX_PARTITIONS, ensure_topics, topic_name_problem
    from simulator.logs import log_file_problem, parse_mapping, read_event_log
    from streams.replay import TooLargeToSortError, replay_to_kafka, time_ordered

    if args.speed is not None and not (args.speed > 0 and math.isfinite(args.speed)):
        raise ConfigError(
            f"--speed {args.speed}: must be a finite number > 0 (or use --as-fast-as-possible)"
        )
    if args.limit is not None and args.limit < 0:
        raise ConfigError(f"--limit {args.limit}: must be >= 0")
    if args.max_sort_events < 1:
        raise ConfigError(f"--max-sort-events {args.max_sort_events}: must be >= 1")
    if args.partitions < 1:
        raise ConfigError(f"--partitions {args.partitions}: must be >= 1")
    if args.partitions > MAX_PARTITIONS:
        raise ConfigError(f"--partitions {args.partitions}: must be at most {MAX_PARTITIONS}")
    problem = topic_name_problem(args.topic)
    if problem:
        raise ConfigError(f"--topic {args.topic!r}: {problem}")
    problem = log_file_problem(args.file)
    if problem:
        raise ConfigError(f"{args.file}: {problem}")
    try:
        mapping = parse_mapping(args.map) if args.map else None
    except ValueError as exc:
        raise ConfigError(f"--map {args.map!r}: {exc}") from exc
    settings = kafka_settings(args)  # checks the addresses; connects to nothing
    events: Iterable[InteractionEvent] = read_event_log(args.file, mapping)
    if args.limit is not None:  # a limit past sys.maxsize, which islice refuses, is none
        events = itertools.islice(events, min(args.limit, sys.maxsize))
    # The file is read before Kafka is touched: all of it when sorting, else its first event.
    reordered = 0
    try:
        if args.keep_file_order:
            first = list(itertools.islice(events, 1))
            events = itertools.chain(first, events)
        else:
            ordered = time_ordered(events, args.max_sort_events, str(args.file))
            events, reordered = ordered.events, ordered.reordered
    except TooLargeToSortError as exc:
        print(f"recoil replay: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad row in the file: the reader names file and line
        print(f"recoil replay: {exc}")
        return 1
    except OSError as exc:
        raise ConfigError(f"{args.file}: cannot read: {exc.strerror or exc}") from None
    if args.keep_file_order:
        print(
            "keeping file order: the worker drops every event older than an earlier event "
            "of its user (out_of_order)",
            file=sys.stderr,
        )
    else:
        print(
            f"sorted {len(ordered.events)} events by time: {reordered} were older than an "
            f"earlier event of the same user and were moved into time order",
            flush=True,
        )
    ensure_topics(settings, [args.topic], partitions=args.partitions)
    with tqdm(desc=f"replay -> {args.topic}", unit="ev", unit_scale=True) as bar:
        try:
            stats = asyncio.run(
                replay_to_kafka(events, settings, args.topic, args.speed, bar.update)
            )
        except ValueError as exc:  # a bad row in the file: the reader names file and line
            print(f"recoil replay: {exc}")
            return 1
    stats = dataclasses.replace(stats, reordered=reordered)
    print(
        f"replayed {stats.events} events to {args.topic} in {stats.seconds:.1f}s "
        f"({stats.events_per_second:,.0f} events/s); reordered {stats.reordered}, "
        f"late {stats.late}"
    )
    if stats.late:
        print(
            f"warning: {stats.late} of {stats.events} events were sent after a newer event "
            f"of the same user; the worker will drop them as out_of_order",
            file=sys.stderr,
        )
    return 0
