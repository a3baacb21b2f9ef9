"""``recoil bench streams``: events/s through one stream worker vs. two ceilings.

One run, one topic, three readers, one after the other:

1. the reference: a plain aiokafka consumer reading every record of the topic
   (no group, no decoding) -- what the broker and client can deliver here;
2. Faust's own ceiling: a no-op Faust agent (a real subprocess, ``python -m
   bench.streams noop``) in its own consumer group, with the worker's
   processing guarantee, batch size and event loop, stock Faust otherwise
   (memory store, default monitor and consumer). It takes the same batches
   and does nothing with them; Faust acks and commits them;
3. one ``recoil worker`` (a real subprocess, the default settings unless
   overridden; ``--workers N``: N in one consumer group, each with its own
   data directory, for a per-host rate): decode, validate, label, window,
   table and changelog, examples out, in transactions. Its rate is taken
   from its own counters, from the first event it finished to the last, so
   start-up and recovery are excluded (with N workers, the rebalance as the
   others join is not); the no-op agent's the same way, from its first batch
   to its last.

It prints the three rates and the worker's ratio to each ceiling (with N
workers, of their sum: the host's rate against one process's ceilings), and
the 1-minute load average at the start and the end, and writes
``streams.png`` (events done over time) and ``streams.json`` into ``--out``.
Speed is never asserted; machines differ, the ratios travel better.

On a shared machine the rates move with the other jobs' load, and the no-op
agent and the worker run at different moments. The CPU time each process
(all its threads) spent per event over the same span is steadier: their
quotient, "CPU ratio", estimates what the rates' ratio would be on an idle
machine, where each process has a core to itself.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from recoil.broker.args import add_optional_kafka_arguments, given_or_embedded_kafka
from recoil.core.settings import add_arguments, add_command, from_args

HELP = "events/s through one stream worker vs. a no-op Faust agent and a raw aiokafka consumer"


# The worker's settings a run may change; every other one keeps StreamsConfig's default.
WORKER_SETTINGS = (
    "store", "labels", "processing_guarantee", "partitions", "batch_size", "fetch_batches",
)  # fmt: skip


def register(sub: Any) -> None:
    from streams.config import StreamsConfig

    parser = add_command(sub, "streams", run, HELP, __doc__ or "", raw=True)
    add_optional_kafka_arguments(parser, default=None)
    parser.add_argument("--events", type=int, default=50_000, help="events to process")
    parser.add_argument("--users", type=int, default=2_000, help="distinct users")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes in one group (a per-host rate)"
    )
    add_arguments(parser, StreamsConfig, only=WORKER_SETTINGS)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-out"),
        help="directory for streams.png and streams.json",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after seconds")


def run(args: argparse.Namespace) -> int:
    from bench.pipeline import MAX_EVENTS
    from recoil.core.errors import ConfigError

    if min(args.events, args.users, args.partitions, args.workers) < 1:
        raise ConfigError("--events, --users, --partitions and --workers must be >= 1")
    if args.events > MAX_EVENTS:
        raise ConfigError(f"--events {args.events}: at most {MAX_EVENTS} (all are held in memory)")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConfigError(f"--timeout {args.timeout}: must be a finite number of seconds > 0")
    with given_or_embedded_kafka(args) as settings:
        return _bench(args, settings)


def _bench(args: argparse.Namespace, settings: Any) -> int:
    from recoil.broker.embedded import free_port
    from recoil.core.processes import ProcessGroup
    from streams.config import StreamsConfig
    from streams.harness import create_topics, synthetic_events
    from streams.replay import replay_to_kafka

    load_at_start = os.getloadavg()[0]
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

    with ProcessGroup(work / "logs") as group:
        noop_rate, noop_curve, noop_cpu = _noop_consume(
            group, settings, config, len(events), work, args
        )
    print(
        f"no-op Faust agent:     {noop_rate:,.0f} events/s "
        f"({noop_cpu * 1e6:,.0f} us of CPU per event)",
        flush=True,
    )

    with ProcessGroup(work / "logs") as group:
        from streams.harness import start_worker

        urls, pids = [], []
        for i in range(args.workers):
            # One group (app id); each process its own ports and local table files.
            own = dataclasses.replace(
                config, web_port=free_port(), metrics_port=free_port(), data_dir=work / f"data-{i}"
            ) if i else config  # fmt: skip
            worker = start_worker(group, f"worker-{i}" if i else "worker", settings, own)
            urls.append(f"http://127.0.0.1:{own.metrics_port}/metrics")
            pids.append(worker.process.pid)
            print(f"stream worker {i + 1} of {args.workers} (log: {worker.log_file}) ...")
        worker_rate, worker_curve, per_event, worker_cpu = _watch_worker(
            urls, pids, len(events), args.timeout, group
        )
    load_at_end = os.getloadavg()[0]
    which = "stream worker:  " if args.workers == 1 else f"{args.workers} stream workers:"
    print(
        f"{which}       {worker_rate:,.0f} events/s "
        f"({per_event * 1e6:,.0f} us of agent time, {worker_cpu * 1e6:,.0f} us of CPU per event)"
    )
    ratio = worker_rate / raw_rate
    noop_ratio = worker_rate / noop_rate
    cpu_ratio = noop_cpu / worker_cpu
    print(f"ratio worker / no-op:  {noop_ratio:.3f} (CPU ratio {cpu_ratio:.3f})")
    print(f"ratio worker / raw:    {ratio:.3f}")
    print(f"1-minute load average: {load_at_start:.2f} at the start, {load_at_end:.2f} at the end")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "events": len(events),
        "users": args.users,
        "partitions": args.partitions,
        "workers": args.workers,
        "history_length": args.history_length,
        "guarantee": args.processing_guarantee,
        "store": args.store,
        "batch_size": args.batch_size,
        "fetch_batches": args.fetch_batches,
        "raw_events_per_second": raw_rate,
        "noop_faust_events_per_second": noop_rate,
        "worker_events_per_second": worker_rate,
        "ratio": ratio,
        "ratio_to_noop_faust": noop_ratio,
        "agent_seconds_per_event": per_event,
        "noop_cpu_seconds_per_event": noop_cpu,
        "worker_cpu_seconds_per_event": worker_cpu,
        "cpu_ratio_to_noop_faust": cpu_ratio,
        "produce_events_per_second": produced.events_per_second,
        "load_1m_at_start": load_at_start,
        "load_1m_at_end": load_at_end,
    }
    (args.out / "streams.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(args.out / "streams.png", raw_curve, noop_curve, worker_curve, result)
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


def _noop_consume(
    group: Any, settings: Any, config: Any, count: int, work: Path, args: argparse.Namespace
) -> tuple[float, list[tuple[float, int]], float]:
    """Run the no-op Faust agent until it has taken ``count`` events: rate, curve, CPU s/event."""
    import sys

    result = work / "noop.json"
    child = group.start(
        "noop",
        [
            sys.executable, "-m", "bench.streams", "noop",
            "--bootstrap-servers", settings.bootstrap_servers,
            "--topic", config.input_topic,
            "--app-id", f"{config.app_id}-noop",
            "--partitions", str(config.partitions),
            "--processing-guarantee", config.processing_guarantee,
            "--batch-size", str(config.batch_size),
            "--batch-timeout", str(config.batch_timeout),
            "--commit-interval", str(config.commit_interval),
            "--count", str(count),
            "--data-dir", str(work / "noop-data"),
            "--result", str(result),
        ],
        env=settings.env(),
    )  # fmt: skip
    print(f"no-op Faust agent (log: {child.log_file}) ...", flush=True)
    deadline = time.monotonic() + args.timeout
    while not result.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the no-op agent did not take {count} events in {args.timeout}s")
        group.check()
        time.sleep(0.1)
    group.stop(child)
    found = json.loads(result.read_text())
    curve = [(float(t), int(n)) for t, n in found["curve"]]
    elapsed = curve[-1][0]
    rate = curve[-1][1] / elapsed if elapsed > 0 else float("inf")
    (first, cpu_first), (last, cpu_last) = found["cpu"]
    return rate, curve, (cpu_last - cpu_first) / max(1, last - first)


def noop_main(argv: list[str]) -> int:
    """``python -m bench.streams noop ...``: the no-op Faust agent of :func:`_noop_consume`."""
    import faust

    from recoil.core.kafka_settings import KafkaSettings
    from streams.worker import use_uvloop

    parser = argparse.ArgumentParser(prog="python -m bench.streams noop")
    for name in ("bootstrap-servers", "topic", "app-id", "processing-guarantee", "data-dir"):
        parser.add_argument(f"--{name}", required=True)
    for name in ("partitions", "batch-size", "count"):
        parser.add_argument(f"--{name}", type=int, required=True)
    for name in ("batch-timeout", "commit-interval"):
        parser.add_argument(f"--{name}", type=float, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)

    use_uvloop()  # the worker's event loop, so the ceiling is the worker's too
    settings = KafkaSettings.from_env(args.bootstrap_servers)
    app = faust.App(
        args.app_id,
        broker=settings.faust_broker(),
        broker_credentials=settings.faust_credentials(),
        store="memory://",
        datadir=args.data_dir,
        processing_guarantee=args.processing_guarantee,
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=args.commit_interval,
        web_enabled=False,
        autodiscover=False,
    )
    source = app.topic(
        args.topic, key_serializer="raw", value_serializer="raw", partitions=args.partitions
    )
    curve: list[tuple[float, int]] = []
    cpu: list[tuple[int, float]] = []  # (events taken, CPU seconds) at the first and last batch

    async def noop_agent(stream: Any) -> None:
        seen, started = 0, 0.0
        async for events in stream.take_events(args.batch_size, within=args.batch_timeout):
            now = time.monotonic()
            seen += len(events)
            if not started:
                started = now
                curve.append((0.0, 0))
                cpu.append((seen, time.process_time()))  # all of this process's threads
            curve.append((now - started, seen))
            if seen >= args.count and not args.result.exists():
                cpu.append((seen, time.process_time()))
                partial = args.result.with_suffix(".tmp")
                partial.write_text(json.dumps({"curve": curve, "cpu": cpu}))
                partial.rename(args.result)  # the bench never reads half a file

    app.agent(source, name="bench.noop_agent", concurrency=1)(noop_agent)
    worker = faust.Worker(
        app, loglevel="WARNING", override_logging=False, redirect_stdouts=False, quiet=True
    )
    worker.execute_from_commandline()
    return 0


def _watch_worker(
    urls: list[str], pids: list[int], count: int, timeout: float, group: Any
) -> tuple[float, list[tuple[float, int]], float, float]:
    """Poll the workers' counters until ``count`` events are done.

    Returns the rate, the curve, the agent's seconds per event and the CPU seconds
    per event of the processes ``pids`` and their children (the supervised workers).
    """
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
            pages = [scrape(url) for url in urls]
        except OSError:
            time.sleep(0.2)
            continue
        done = sum(metric(s, "recoil_stream_processing_seconds_count") or 0.0 for s in pages)
        busy = sum(metric(s, "recoil_stream_processing_seconds_sum") or 0.0 for s in pages)
        if done and not started:
            started = time.monotonic()
            cpu_first, done_first = cpu_seconds(pids), done
        if started:
            curve.append((time.monotonic() - started, int(done)))
        time.sleep(0.1)
    cpu = (cpu_seconds(pids) - cpu_first) / max(1.0, done - done_first)
    elapsed = curve[-1][0]
    return done / elapsed if elapsed > 0 else float("inf"), curve, busy / done, cpu


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` and all their descendants (Linux ``/proc``)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # fields after "pid (comm)": state, ppid, ... utime at 11, stime at 12
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
    family, grew = set(pids), True
    while grew:
        more = {pid for pid, f in stats.items() if int(f[1]) in family} - family
        family |= more
        grew = bool(more)
    ticks = sum(int(stats[p][11]) + int(stats[p][12]) for p in family if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


def _plot(
    path: Path,
    raw: list[tuple[float, int]],
    noop: list[tuple[float, int]],
    worker: list[tuple[float, int]],
    result: dict[str, Any],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    lines = (
        (raw, "raw aiokafka consumer"),
        (noop, "no-op Faust agent"),
        (worker, "stream worker (agent)" if result["workers"] == 1 else "stream workers"),
    )
    for curve, label in lines:
        ax.plot([t for t, _ in curve], [n for _, n in curve], label=label)
    ax.set_xlabel("seconds since the first event")
    ax.set_ylabel("events done")
    workers = "worker" if result["workers"] == 1 else f"{result['workers']} workers"
    ax.set_title(
        f"{result['events']:,} events: {workers} {result['worker_events_per_second']:,.0f}/s, "
        f"no-op Faust {result['noop_faust_events_per_second']:,.0f}/s "
        f"(ratio {result['ratio_to_noop_faust']:.2f}, "
        f"CPU ratio {result['cpu_ratio_to_noop_faust']:.2f}),\n"
        f"raw aiokafka {result['raw_events_per_second']:,.0f}/s (ratio {result['ratio']:.3f})",
        fontsize=10,
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["noop"]:
        sys.exit("usage: python -m bench.streams noop --help (run by recoil bench streams)")
    sys.exit(noop_main(sys.argv[2:]))
