"""``recoil bench streams``: events/s through one stream worker vs. a raw aiokafka consumer.

One run, one topic, two readers:

1. the reference: a plain aiokafka consumer reading every record of the topic
   (no group, no decoding) -- what the broker and client can deliver here;
2. one ``recoil worker`` (a real subprocess, the default settings unless
   overridden): decode, validate, label, window, table and changelog, examples
   out, in transactions. Its rate is taken from its own counters, from the
   first event it finished to the last, so start-up and recovery are excluded.

It prints both rates and their ratio, and writes ``streams.png`` (events done
over time, both readers) and ``streams.json`` into ``--out``. Speed is never
asserted; machines differ, the ratio travels better.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from recoil.broker.args import add_optional_kafka_arguments, given_or_embedded_kafka
from recoil.core.settings import add_arguments, add_command, from_args

HELP = "events/s through one stream worker vs. a raw aiokafka consumer on the same topic"


# The worker's settings a run may change; every other one keeps StreamsConfig's default.
WORKER_SETTINGS = ("store", "labels", "processing_guarantee", "partitions", "batch_size")


def register(sub: Any) -> None:
    from streams.config import StreamsConfig

    parser = add_command(sub, "streams", run, HELP, __doc__ or "", raw=True)
    add_optional_kafka_arguments(parser, default=None)
    parser.add_argument("--events", type=int, default=50_000, help="events to process")
    parser.add_argument("--users", type=int, default=2_000, help="distinct users")
    add_arguments(parser, StreamsConfig, only=WORKER_SETTINGS)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-out"),
        help="directory for streams.png and streams.json",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after seconds")


def run(args: argparse.Namespace) -> int:
    if args.events < 1 or args.users < 1 or args.partitions < 1:
        from recoil.core.errors import ConfigError

        raise ConfigError("--events, --users and --partitions must be >= 1")
    with given_or_embedded_kafka(args) as settings:
        return _bench(args, settings)


def _bench(args: argparse.Namespace, settings: Any) -> int:
    from recoil.broker.embedded import free_port
    from recoil.core.processes import ProcessGroup
    from streams.config import StreamsConfig
    from streams.harness import create_topics, synthetic_events
    from streams.replay import replay_to_kafka

    tag = f"bench-{int(time.time())}"
    work = Path(tempfile.mkdtemp(prefix="recoil-bench-streams-"))
    config = from_args(
        StreamsConfig,
        args,
        only=WORKER_SETTINGS,
        app_id=tag,
        data_dir=work / "data",
        input_topic=f"{tag}.interactions",
        output_topic=f"{tag}.examples",
        dlq_topic=f"{tag}.dlq",
        web_port=free_port(),
        metrics_port=free_port(),
    )
    create_topics(settings, config)
    events = synthetic_events(args.events, args.users, seed=1, duplicates=0.0, late=0.0)
    print(f"producing {len(events):,} events to {config.input_topic} ...", flush=True)
    produced = asyncio.run(replay_to_kafka(events, settings, config.input_topic))
    print(f"  produced at {produced.events_per_second:,.0f} events/s", flush=True)

    raw_rate, raw_curve = asyncio.run(_raw_consume(settings, config.input_topic, len(events)))
    print(f"raw aiokafka consumer: {raw_rate:,.0f} events/s", flush=True)

    url = f"http://127.0.0.1:{config.metrics_port}/metrics"
    with ProcessGroup(work / "logs") as group:
        from streams.harness import start_worker

        worker = start_worker(group, "worker", settings, config)
        print(f"one stream worker (log: {worker.log_file}) ...", flush=True)
        worker_rate, worker_curve, per_event = _watch_worker(url, len(events), args.timeout, group)
    print(
        f"stream worker:         {worker_rate:,.0f} events/s "
        f"({per_event * 1e6:,.0f} us of agent time per event)"
    )
    ratio = worker_rate / raw_rate
    print(f"ratio worker / raw:    {ratio:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "events": len(events),
        "users": args.users,
        "partitions": args.partitions,
        "history_length": args.history_length,
        "guarantee": args.processing_guarantee,
        "store": args.store,
        "batch_size": args.batch_size,
        "raw_events_per_second": raw_rate,
        "worker_events_per_second": worker_rate,
        "ratio": ratio,
        "agent_seconds_per_event": per_event,
        "produce_events_per_second": produced.events_per_second,
    }
    (args.out / "streams.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(args.out / "streams.png", raw_curve, worker_curve, result)
    print(f"wrote {args.out / 'streams.json'} and {args.out / 'streams.png'}")
    return 0


async def _raw_consume(
    settings: Any, topic: str, count: int
) -> tuple[float, list[tuple[float, int]]]:
    """Records/s of a group-less aiokafka consumer reading ``count`` records."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        **settings.aiokafka(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen, started, curve = 0, 0.0, [(0.0, 0)]
    try:
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                if not started:
                    started = time.monotonic()
                seen += len(records)
            if started:
                curve.append((time.monotonic() - started, seen))
    finally:
        await consumer.stop()
    elapsed = curve[-1][0]
    return seen / elapsed if elapsed > 0 else float("inf"), curve


def _watch_worker(
    url: str, count: int, timeout: float, group: Any
) -> tuple[float, list[tuple[float, int]], float]:
    """Poll the worker's counters until ``count`` events are done: rate, curve, agent s/event."""
    from streams.harness import metric, scrape

    deadline = time.monotonic() + timeout
    started = 0.0
    curve = [(0.0, 0)]
    done = 0.0
    busy = 0.0
    while done < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did {done:.0f} of {count} events in {timeout}s")
        group.check()
        try:
            samples = scrape(url)
        except OSError:
            time.sleep(0.2)
            continue
        done = metric(samples, "recoil_stream_processing_seconds_count") or 0.0
        busy = metric(samples, "recoil_stream_processing_seconds_sum") or 0.0
        if done and not started:
            started = time.monotonic()
        if started:
            curve.append((time.monotonic() - started, int(done)))
        time.sleep(0.1)
    elapsed = curve[-1][0]
    return done / elapsed if elapsed > 0 else float("inf"), curve, busy / done


def _plot(
    path: Path,
    raw: list[tuple[float, int]],
    worker: list[tuple[float, int]],
    result: dict[str, Any],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for curve, label in ((raw, "raw aiokafka consumer"), (worker, "stream worker (agent)")):
        ax.plot([t for t, _ in curve], [n for _, n in curve], label=label)
    ax.set_xlabel("seconds since the first event")
    ax.set_ylabel("events done")
    ax.set_title(
        f"{result['events']:,} events: worker {result['worker_events_per_second']:,.0f}/s, "
        f"raw {result['raw_events_per_second']:,.0f}/s (ratio {result['ratio']:.3f})"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
