"""``recoil simulate``: live simulated users against the serving API, probes per snapshot."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recoil.broker.args import add_kafka_arguments, kafka_settings
from recoil.core.checks import (
    MAX_SEED,
    check_finite,
    check_listen,
    check_port,
    http_url_problem,
)
from recoil.core.dirs import check_directory
from recoil.core.errors import ConfigError
from recoil.core.settings import add_arguments, add_command, from_args, setting
from recoil.core.topics import (
    INTERACTIONS,
    TRAINING_EXAMPLES,
    topic_name_problem,
    unreachable_broker,
)


@dataclass(frozen=True)
class SimulateOptions:
    """Where the events go and what the command writes: the process's, not LiveConfig's."""

    topic: str = setting(INTERACTIONS, "topic the users' interaction events go to")
    examples_topic: str = setting(
        TRAINING_EXAMPLES,
        "where to find a freshness probe's example ('' = no snapshot freshness)",
    )
    ab_results: Path | None = setting(None, "keep the latest per-arm A/B summary here")
    metrics_port: int | None = setting(
        None, "serve /metrics on this port (0 = any free port; the address is printed)"
    )
    metrics_host: str = setting("127.0.0.1", "/metrics bind address")
    duration: float = setting(0.0, "seconds; 0 = until Ctrl-C")
    results: Path | None = setting(None, "append probe results (JSONL)")

    def __post_init__(self) -> None:
        check_finite("duration", self.duration, ">= 0", "a finite number of seconds")
        check_port("metrics_port", self.metrics_port)
        # Kafka refuses a bad name only at the first send, or for the examples topic
        # when the first probe looks for its example: minutes into the run.
        for name in ("topic", "examples_topic"):
            value = getattr(self, name)
            problem = topic_name_problem(value) if value or name == "topic" else None
            if problem:
                raise ValueError(f"{name} {value!r}: {problem}")
        if not self.metrics_host.strip():  # '' would serve /metrics on every interface
            raise ValueError("metrics_host is empty: give an address (127.0.0.1, or 0.0.0.0)")


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "simulate",
        run,
        help="simulated users consume recommendations and produce events; probe each snapshot",
        description="The closed loop: world users ask the serving API for recommendations, "
        "respond, and their events go to Kafka. Every new snapshot version of each probed "
        "model is measured with the counterfactual responsiveness probe; results go to "
        "Prometheus (--metrics-port) and, one JSON line each, to --results.",
        deferred=add_settings,
    )
    add_kafka_arguments(parser)
    add_arguments(parser, SimulateOptions)


def add_settings(parser: argparse.ArgumentParser) -> None:
    """LiveConfig's settings (simulator.live imports numpy and aiohttp), and the A/B flags."""
    from simulator.live import LiveConfig

    add_arguments(parser, LiveConfig)
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
        "--switch",
        default=None,
        metavar="ARM=OTHER@SECONDS",
        help="after SECONDS, serve and probe ARM's users from OTHER's model (a deliberate "
        "regression, to check the regression alert)",
    )


def parse_probes(specs: list[str], arm: str, serving_url: str) -> tuple[tuple[str, str], ...]:
    probes = []
    for spec in specs or [f"{arm}={serving_url}"]:
        name, sep, url = spec.partition("=")
        problem = http_url_problem(url) if sep and name else "no ARM="
        if problem:
            raise ConfigError(f"--probe {spec[:200]!r} must be ARM=http://host:port ({problem})")
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


def live_config(args: argparse.Namespace) -> Any:
    """The validated LiveConfig of parsed arguments (ConfigError names the flag)."""
    from simulator.ab import parse_split
    from simulator.live import LiveConfig
    from simulator.world import WORLD_PRESETS, world_preset

    problem = http_url_problem(args.serving_url)
    if problem:
        raise ConfigError(f"--serving-url {args.serving_url[:200]!r}: {problem}")
    probes = parse_probes(args.probe, args.arm, args.serving_url)
    try:
        split = () if args.split is None else parse_split(args.split, [a for a, _ in probes])
    except ValueError as exc:
        raise ConfigError(f"--split {args.split!r}: {exc}") from None
    config = from_args(
        LiveConfig,
        args,
        serving_url=args.serving_url.rstrip("/"),
        probe_urls=probes,
        split=split,
        switch=parse_switch(args.switch),
    )
    if config.world not in WORLD_PRESETS:
        raise ConfigError(f"--world {config.world!r}: choose one of {sorted(WORLD_PRESETS)}")
    world_users = world_preset(config.world).num_users
    if config.users > world_users:
        raise ConfigError(f"--users {config.users}: world {config.world!r} has {world_users} users")
    check_probe_settings(config)
    return config


def check_probe_settings(config: Any) -> None:
    """What the simulation checks only when it uses it, checked now: the seed (numpy
    refuses a negative one when the world is built) and the probe's settings (made into a
    ProbeConfig at each new snapshot, so a bad one stops the run at the first probe)."""
    from serving.requests import MAX_K
    from simulator.probe import MAX_PROBE_K, MAX_SIMULATIONS

    if not 0 <= config.seed <= MAX_SEED:
        raise ConfigError(f"--seed must be in 0..{MAX_SEED}, got {config.seed}")
    counts = {
        "--probe-simulations": config.probe_simulations,
        "--probe-k": config.probe_k,
        "--probe-top-n": config.probe_top_n,
    }
    bad = [f"{flag} {value}" for flag, value in counts.items() if value < 1]
    if bad:  # ProbeConfig's rule
        raise ConfigError(f"{', '.join(bad)}: must be >= 1")
    # ProbeConfig's bounds, and serving's for the recommendations each probe step asks for
    limits = {"--probe-simulations": MAX_SIMULATIONS, "--probe-k": MAX_PROBE_K,
              "--probe-top-n": MAX_K}  # fmt: skip
    over = [f"{flag} {counts[flag]}" for flag, most in limits.items() if counts[flag] > most]
    if over:
        most = ", ".join(f"{flag} {limit}" for flag, limit in limits.items())
        raise ConfigError(f"{', '.join(over)}: too large (at most {most})")


def run(args: argparse.Namespace) -> int:
    from_args(SimulateOptions, args)  # checks them
    for flag, path in (("--results", args.results), ("--ab-results", args.ab_results)):
        if path is not None:  # written while it runs: an unusable one would stop it then
            try:
                is_dir = path.is_dir()
            except OSError as exc:  # a name longer than the system takes
                raise ConfigError(
                    f"{flag} {path}: {exc.strerror or exc}; give a file name"
                ) from None
            if is_dir:
                raise ConfigError(f"{flag} {path} is a directory; give a file name")
            check_directory(path.parent, f"{flag} {path}: its directory", "a writable one")
    config = live_config(args)
    if args.metrics_port is not None:  # before Kafka: start_http_server's error is a traceback
        check_listen(args.metrics_host, args.metrics_port, "--metrics-host", "--metrics-port")
    asyncio.run(_main(args, kafka_settings(args), config))
    return 0


async def _main(args: argparse.Namespace, settings: Any, config: Any) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError
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
            # run() checked that its directory could be made; it is made at the first write
            args.results.parent.mkdir(parents=True, exist_ok=True)
            with args.results.open("a") as f:
                f.write(line + "\n")

    def on_ab(summaries: list[Any]) -> None:
        if args.ab_results is not None:
            partial = args.ab_results.with_suffix(".partial")
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps([s.to_dict() for s in summaries]))
            partial.replace(args.ab_results)  # readers never see half a summary

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.duration > 0:
        loop.call_later(args.duration, stop.set)

    producer = AIOKafkaProducer(**settings.aiokafka(), acks="all", linger_ms=5)
    try:
        await producer.start()
    except KafkaConnectionError as exc:
        await producer.stop()  # its connections and tasks, or asyncio logs them unclosed
        raise unreachable_broker(settings, exc) from None
    consumer = None
    if args.examples_topic and args.freshness_seconds > 0:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            args.examples_topic,
            **settings.aiokafka(),
            group_id=None,
            isolation_level="read_committed",
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
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
