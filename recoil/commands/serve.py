"""``recoil serve``: the recommend API over the newest snapshot in a store.

At start, a newest version that fails to load is refused (logged, counted) and the newest
older one that loads is served instead (``serving.app.versions_to_try``); once one is
served, a bad newer version is refused and the served one stays.

Whatever stops it from starting (a setting out of range, a store it cannot create, an
address it cannot listen on) is a :class:`ConfigError`: one line that names the flag to
fix, printed by ``recoil.cli``, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recoil.core.checks import bind_error, http_url_problem
from recoil.core.dirs import ensure_directory
from recoil.core.errors import ConfigError
from recoil.core.settings import add_arguments, add_command, from_args

if TYPE_CHECKING:
    from serving.app import SnapshotHolder
    from serving.batching import BatchConfig
    from serving.config import ServeConfig
    from serving.metrics import ServingMetrics


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "serve",
        run,
        help="serve GET /recommend/{user_id} and POST /recommend over the newest snapshot",
        description="HTTP recommend API. Loads the newest snapshot from --store (at start, "
        "an older one if the newest fails to load) and hot-swaps to newer ones as the "
        "learner publishes them; live histories come from a stream worker's web view "
        "(--history-url).",
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
    from serving.batching import BatchConfig
    from serving.config import ServeConfig

    add_arguments(parser, ServeConfig)  # --poll-seconds, --body-timeout-s
    add_arguments(parser, BatchConfig)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a TCP port")
    if not args.host.strip():  # aiohttp binds '' on every interface, without a word
        raise ConfigError("--host is empty: give an address (127.0.0.1, or 0.0.0.0 for all)")
    check_history_url(args.history_url)
    from serving.batching import BatchConfig
    from serving.config import ServeConfig

    config = from_args(ServeConfig, args)
    batching = from_args(BatchConfig, args)
    # created if missing: the learner may publish into it later
    ensure_directory(args.store, "--store", "the learner's snapshot directory")
    asyncio.run(serve(args, config, batching))
    return 0


def check_history_url(url: str) -> None:
    """``--history-url`` must be an http(s) URL with a host ('' turns histories off):
    anything else is accepted at start and fails on every ``GET /recommend/{user_id}``."""
    if not url:
        return
    problem = http_url_problem(url)
    if problem:
        raise ConfigError(
            f"--history-url {url[:200]!r} is not an http(s) URL like http://127.0.0.1:6066 "
            f"({problem}; '' turns GET /recommend/{{user_id}} off)"
        )


def listen_error(host: str, port: int, exc: OSError | UnicodeError) -> ConfigError:
    """Why the server cannot listen on ``host:port``, as the flags to change."""
    if isinstance(exc, UnicodeError):  # the IDNA codec refuses the name before any lookup
        return ConfigError(f"--host {host[:80]} is not a valid host name ({exc})")
    if isinstance(exc, socket.gaierror):
        return ConfigError(
            f"--host {host} is not an address this machine can resolve ({exc.strerror}); "
            "give an IP address or a resolvable name"
        )
    return bind_error(host, port, exc)


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


def watch_store(
    holder: SnapshotHolder, store: Path, metrics: ServingMetrics, poll_seconds: float
) -> Coroutine[Any, Any, None]:
    """Serving's snapshot watcher over the learner's store: the newest version that loads
    at start (older ones when the newest is bad), then each newer one as it is published."""
    from learner.snapshot import latest_version, list_versions, load_snapshot
    from serving.app import watch_snapshots

    return watch_snapshots(
        holder,
        lambda: latest_version(store),
        lambda version: load_snapshot(store, version),
        metrics,
        interval=poll_seconds,
        versions=lambda: list_versions(store),
    )


async def serve(args: argparse.Namespace, config: ServeConfig, batching: BatchConfig) -> None:
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from serving.app import SnapshotHolder, create_app
    from serving.batching import MicroBatcher
    from serving.history import HttpHistorySource
    from serving.metrics import ServingMetrics

    registry = CollectorRegistry()
    metrics = ServingMetrics(registry)
    holder = SnapshotHolder()
    history = HttpHistorySource(args.history_url) if args.history_url else None
    store: Path = args.store

    def watcher() -> Coroutine[Any, Any, None]:
        return watch_store(holder, store, metrics, config.poll_seconds)

    batcher = MicroBatcher(batching, worker_init=lambda: worker_threads(batching.worker_threads))
    app = create_app(
        holder, history, registry, metrics, background=[watcher], batcher=batcher, config=config
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        try:
            await site.start()
        except (OSError, UnicodeError) as exc:  # socket.gaierror: an unresolvable --host
            raise listen_error(args.host, args.port, exc) from None
        # What the imports made (torch, faiss, aiohttp: ~10^5 objects) lives as long as
        # the process: out of the cyclic collector's sight, its full passes stop scanning
        # them on the request path.
        gc.freeze()
        port = bound_port(runner.addresses, args.port)
        print(f"serving on http://{args.host}:{port} from {store}", flush=True)
        await asyncio.Event().wait()
    finally:
        if history is not None:
            await history.close()
        await runner.cleanup()
