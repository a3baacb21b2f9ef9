"""``recoil bench freshness``: event -> effect latency of the running loop.

Starts the loop (embedded broker unless ``--bootstrap-servers``; one arm) with
simulated background traffic, then measures, with fresh probe users:

(a) dislike produced -> ``GET /recommend`` reflects it (p50/p99 over
    ``--samples``); the reference, measured in the same run, is a plain
    ``GET /recommend`` for a user with history (the request alone);
(b) event produced -> first snapshot trained on its example (p50 over
    ``--snapshot-samples``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from recoil.broker.args import add_optional_kafka_arguments, given_or_embedded_kafka
from recoil.core.checks import check_finite
from recoil.core.errors import ConfigError
from recoil.core.settings import add_command

HELP = "dislike -> changed recommendations and event -> snapshot latency of the running loop"


def register(sub: Any) -> None:
    parser = add_command(sub, "freshness", run, HELP, __doc__ or "", raw=True)
    add_optional_kafka_arguments(parser, default=None)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--snapshot-samples", type=int, default=5)
    parser.add_argument("--snapshot-every-seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="background impressions/s")
    parser.add_argument("--out", type=Path, default=None, help="write freshness.json here")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(args: argparse.Namespace, loop: Any, kafka: Any) -> dict[str, Any]:
    import aiohttp
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from recoil.core.topics import INTERACTIONS, TRAINING_EXAMPLES
    from simulator.freshness import feature_freshness, find_example, snapshot_freshness

    url = loop.serving_url(loop.config.arms[0])
    items = [("i0", "c0", "k0"), ("i1", "c0", "k0"), ("i7", "c1", "k0")]
    producer = AIOKafkaProducer(**kafka.aiokafka(), acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(
        loop.config.topic(TRAINING_EXAMPLES),
        **kafka.aiokafka(),
        group_id=None,
        isolation_level="read_committed",
        auto_offset_reset="latest",
    )
    await producer.start()
    await consumer.start()
    await consumer.seek_to_end()
    for tp in consumer.assignment():
        await consumer.position(tp)
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # wait for the first snapshot
                loop.group.check()
                try:
                    async with session.get(f"{url}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass  # serving is still starting
                await asyncio.sleep(1)
            feature, reference, samples = [], [], []
            for i in range(args.samples):
                sample = await feature_freshness(
                    session, producer, loop.config.topic(INTERACTIONS), url, items[i % 3]
                )
                feature.append(sample.feature_seconds)
                samples.append(sample)
                start = time.perf_counter()  # reference: the same request, nothing to wait for
                async with session.get(f"{url}/recommend/{sample.event_id[:-2]}?k=1") as resp:
                    await resp.read()
                reference.append(time.perf_counter() - start)
            found = await find_example(
                consumer, {s.event_id for s in samples[-args.snapshot_samples :]}, 60.0
            )
            snapshot = []
            for s in samples[-args.snapshot_samples :]:
                if s.event_id in found:
                    snapshot.append(
                        await snapshot_freshness(session, url, s.produced_at, found[s.event_id])
                    )
    finally:
        await consumer.stop()
        await producer.stop()
    return {
        "feature_p50_seconds": statistics.median(feature),
        "feature_p99_seconds": _pct(feature, 0.99),
        "reference_request_p50_seconds": statistics.median(reference),
        "feature_to_request_ratio_p50": statistics.median(feature) / statistics.median(reference),
        "snapshot_p50_seconds": statistics.median(snapshot) if snapshot else None,
        "snapshot_samples": snapshot,
        "samples": len(feature),
    }


def check_args(args: argparse.Namespace) -> None:
    """Every flag in range before the loop starts (minutes of start-up otherwise wasted)."""
    if args.samples < 1 or not 1 <= args.snapshot_samples <= args.samples:
        raise ConfigError(
            f"--samples {args.samples} must be >= 1 and --snapshot-samples "
            f"{args.snapshot_samples} in 1..--samples"
        )
    try:
        check_finite("--snapshot-every-seconds", args.snapshot_every_seconds, "> 0")
        check_finite("--rate", args.rate, ">= 0", hint="(0 = as fast as possible)")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from recoil.core.processes import ProcessGroup
    from recoil.loop import Loop, LoopConfig

    check_args(args)
    workdir = Path(tempfile.mkdtemp(prefix="recoil-bench-freshness-"))
    config = LoopConfig(
        workdir=workdir,
        arms=("feature_and_labels",),
        rate=args.rate,
        snapshot_every_seconds=args.snapshot_every_seconds,
        probe_simulations=50,
    )
    # The roles stop (ProcessGroup's exit) before the broker they talk to.
    with (
        given_or_embedded_kafka(args, workdir / "kafka") as kafka,
        ProcessGroup(workdir / "logs") as group,
    ):
        loop = Loop(config, kafka, group)
        loop.start()
        print(f"loop started (logs in {workdir / 'logs'}); measuring ...", flush=True)
        result = asyncio.run(_measure(args, loop, kafka))
    print(json.dumps(result, indent=2))
    print(
        "(a) dislike -> GET /recommend reflects it:"
        f" p50 {1000 * result['feature_p50_seconds']:.1f} ms,"
        f" p99 {1000 * result['feature_p99_seconds']:.1f} ms"
        f" ({result['feature_to_request_ratio_p50']:.1f}x a plain request,"
        f" {1000 * result['reference_request_p50_seconds']:.1f} ms)"
    )
    if result["snapshot_p50_seconds"] is not None:
        print(
            f"(b) event -> first snapshot trained on it: p50 {result['snapshot_p50_seconds']:.1f} s"
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "freshness.json").write_text(json.dumps(result, indent=2))
    return 0
