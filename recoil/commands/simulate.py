"""``recoil simulate``: live simulated users against the serving API, probes per snapshot."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from recoil.broker.args import add_kafka_arguments, kafka_settings
from recoil.core.errors import ConfigError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="simulated users consume recommendations and produce events; probe each snapshot",
        description="The closed loop: world users ask the serving API for recommendations, "
        "respond, and their events go to Kafka. Every new snapshot version of each probed "
        "model is measured with the counterfactual responsiveness probe; results go to "
        "Prometheus (--metrics-port) and, one JSON line each, to --results.",
    )
    add_kafka_arguments(parser)
    parser.add_argument("--topic", default="interactions")
    parser.add_argument(
        "--examples-topic",
        default="training-examples",
        help="where to find a freshness probe's example ('' = no snapshot freshness)",
    )
    parser.add_argument(
        "--freshness-seconds", type=float, default=5.0, help="freshness sample interval, 0 = off"
    )
    parser.add_argument("--serving-url", default="http://127.0.0.1:8080")
    parser.add_argument("--arm", default="feature_and_labels", help="arm of the served model")
    parser.add_argument(
        "--probe",
        action="append",
        default=[],
        metavar="ARM=URL",
        help="probe the model served at URL, labelled ARM (repeatable; default: --arm at "
        "--serving-url)",
    )
    parser.add_argument(
        "--split",
        default=None,
        metavar="ARM=SHARE,...",
        help="A/B test over the --probe arms: each user is served by one arm, chosen by a "
        "stable hash of the user id, with these shares ('' = equal shares; default: no A/B, "
        "every user served by --arm at --serving-url)",
    )
    parser.add_argument(
        "--repeat-window",
        type=int,
        default=50,
        help="a repeated dislike: the same creator disliked within this many impressions",
    )
    parser.add_argument(
        "--switch",
        default=None,
        metavar="ARM=OTHER@SECONDS",
        help="after SECONDS, serve and probe ARM's users from OTHER's model (a deliberate "
        "regression, to check the regression alert)",
    )
    parser.add_argument(
        "--ab-results", type=Path, default=None, help="keep the latest per-arm A/B summary here"
    )
    parser.add_argument("--world", default="tiny", help="world preset: tiny|small|medium|large")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0, help="impressions/s, 0 = unthrottled")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--policy-share", type=float, default=0.5)
    parser.add_argument("--probe-simulations", type=int, default=200)
    parser.add_argument("--probe-k", type=int, default=20)
    parser.add_argument("--probe-top-n", type=int, default=10)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics on this port (0 = any free port; the address is printed)",
    )
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until Ctrl-C")
    parser.add_argument("--results", type=Path, default=None, help="append probe results (JSONL)")
    parser.set_defaults(handler=run)


def parse_probes(specs: list[str], arm: str, serving_url: str) -> tuple[tuple[str, str], ...]:
    probes = []
    for spec in specs or [f"{arm}={serving_url}"]:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url.startswith("http"):
            raise ConfigError(f"--probe {spec!r} must be ARM=http://host:port")
        probes.append((name, url.rstrip("/")))
    return tuple(probes)


def parse_switch(spec: str | None) -> tuple[str, str, float] | None:
    if not spec:
        return None
    arms, sep, seconds = spec.rpartition("@")
    arm, sep2, other = arms.partition("=")
    try:
        after = float(seconds)
    except ValueError:
        after = -1.0
    if not sep or not sep2 or not arm or not other or after < 0:
        raise ConfigError(f"--switch {spec!r} must be ARM=OTHER@SECONDS")
    return (arm, other, after)


def run(args: argparse.Namespace) -> int:
    from simulator.ab import parse_split
    from simulator.live import LiveConfig

    settings = kafka_settings(args)
    probes = parse_probes(args.probe, args.arm, args.serving_url)
    try:
        split = () if args.split is None else parse_split(args.split, [a for a, _ in probes])
        config = LiveConfig(
            serving_url=args.serving_url.rstrip("/"), arm=args.arm, world=args.world,
            seed=args.seed, users=args.users, rate=args.rate, concurrency=args.concurrency,
            policy_share=args.policy_share,
            probe_urls=probes, split=split, repeat_window=args.repeat_window,
            switch=parse_switch(args.switch),
            probe_simulations=args.probe_simulations, probe_k=args.probe_k,
            probe_top_n=args.probe_top_n, freshness_seconds=args.freshness_seconds,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    from simulator.world import WORLD_PRESETS

    if args.world not in WORLD_PRESETS:
        raise ConfigError(f"--world {args.world!r}: choose one of {sorted(WORLD_PRESETS)}")
    from simulator.world import world_preset

    world_users = world_preset(args.world).num_users
    if args.users > world_users:
        raise ConfigError(f"--users {args.users}: world {args.world!r} has {world_users} users")
    asyncio.run(_main(args, settings, config))
    return 0


async def _main(args: argparse.Namespace, settings: Any, config: Any) -> None:
    from aiokafka import AIOKafkaProducer
    from prometheus_client import CollectorRegistry, start_http_server

    from simulator.exporter import SimulatorMetrics
    from simulator.live import LiveSimulation

    registry = CollectorRegistry()
    metrics = SimulatorMetrics(registry)
    if args.metrics_port is not None:
        server, _ = start_http_server(args.metrics_port, addr=args.metrics_host, registry=registry)
        print(f"metrics: http://{args.metrics_host}:{server.server_port}/metrics", flush=True)

    def on_probe(result: dict[str, Any]) -> None:
        line = json.dumps(result)
        print(f"probe: {line}", flush=True)
        if args.results is not None:
            with args.results.open("a") as f:
                f.write(line + "\n")

    def on_ab(summaries: list[Any]) -> None:
        if args.ab_results is not None:
            partial = args.ab_results.with_suffix(".partial")
            partial.write_text(json.dumps([s.to_dict() for s in summaries]))
            partial.replace(args.ab_results)  # readers never see half a summary

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.duration > 0:
        loop.call_later(args.duration, stop.set)

    producer = AIOKafkaProducer(**settings.aiokafka(), acks="all", linger_ms=5)
    await producer.start()
    consumer = None
    if args.examples_topic and args.freshness_seconds > 0:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            args.examples_topic, **settings.aiokafka(), group_id=None,
            isolation_level="read_committed", auto_offset_reset="latest",
            enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolve "latest" now, before any probe event
    try:
        simulation = LiveSimulation(
            config, producer, args.topic, metrics, on_probe, on_ab, examples_consumer=consumer
        )
        print(f"simulating {config.users} users of world {config.world!r}", flush=True)
        await simulation.run(stop)
        await producer.flush()
        print(f"produced {simulation.impressions} impressions", flush=True)
    finally:
        if consumer is not None:
            await consumer.stop()
        await producer.stop()
