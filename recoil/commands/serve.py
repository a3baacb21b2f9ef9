"""``recoil serve``: the recommend API over the newest snapshot in a store."""

from __future__ import annotations

import argparse
import asyncio
import gc
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recoil.core.errors import ConfigError
from recoil.core.settings import add_arguments, add_command, from_args

if TYPE_CHECKING:
    from serving.batching import BatchConfig


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "serve",
        run,
        help="serve GET /recommend/{user_id} and POST /recommend over the newest snapshot",
        description="HTTP recommend API. Loads the newest snapshot from --store and hot-swaps "
        "to newer ones as the learner publishes them; live histories come from a stream "
        "worker's web view (--history-url).",
    )
    parser.add_argument("--store", type=Path, required=True, help="snapshot store directory")
    parser.add_argument(
        "--history-url",
        default="http://127.0.0.1:6066",
        help="a stream worker's web address (serves /history/{user_id}); '' disables "
        "GET /recommend/{user_id}",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to bind (0 = any free port; printed)"
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=0.5, help="how often to look for a new snapshot"
    )
    from serving.batching import BatchConfig

    add_arguments(parser, BatchConfig)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a TCP port")
    if args.poll_seconds <= 0:
        raise ConfigError("--poll-seconds must be > 0")
    from serving.batching import BatchConfig

    batching = from_args(BatchConfig, args)
    args.store.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args, batching))
    return 0


def bound_port(addresses: list[Any], asked: int) -> int:
    """The port the server listens on (the kernel's pick when ``asked`` is 0)."""
    for address in addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked


def worker_threads(count: int) -> None:
    """Torch's and FAISS' threads for the calling thread (serving's recommend worker): a
    batch of 64 histories is too small to gain from more, and the event loop needs a core."""
    import faiss
    import torch

    torch.set_num_threads(count)
    faiss.omp_set_num_threads(count)


async def serve(args: argparse.Namespace, batching: BatchConfig) -> None:
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from learner.snapshot import latest_version, load_snapshot
    from serving.app import SnapshotHolder, create_app, watch_snapshots
    from serving.batching import MicroBatcher
    from serving.history import HttpHistorySource
    from serving.metrics import ServingMetrics

    registry = CollectorRegistry()
    metrics = ServingMetrics(registry)
    holder = SnapshotHolder()
    history = HttpHistorySource(args.history_url) if args.history_url else None
    store: Path = args.store

    def watcher() -> Any:
        return watch_snapshots(
            holder,
            lambda: latest_version(store),
            lambda version: load_snapshot(store, version),
            metrics,
            interval=args.poll_seconds,
        )

    batcher = MicroBatcher(batching, worker_init=lambda: worker_threads(batching.worker_threads))
    app = create_app(holder, history, registry, metrics, background=[watcher], batcher=batcher)
    # What the imports made (torch, faiss, aiohttp: ~10^5 objects) lives as long as the
    # process: out of the cyclic collector's sight, its full passes stop scanning them
    # on the request path.
    gc.freeze()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = bound_port(runner.addresses, args.port)
    print(f"serving on http://{args.host}:{port} from {store}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        if history is not None:
            await history.close()
        await runner.cleanup()
