"""``recoil bench serving``: requests/s and latency of ``recoil serve`` vs. a plain aiohttp handler.

One run, two servers, each a child process on 127.0.0.1, driven in turn by one
aiohttp client at each concurrency (``--concurrency``, default 1, 4, 16, 64) for
``--seconds`` after a warm-up:

1. the ceiling: the same aiohttp server whose only handler reads the request
   body and answers a constant JSON body (a real answer of the same size) --
   what aiohttp, the loopback and this client deliver here;
2. ``recoil serve`` (its batching flags from this command's, a real subprocess)
   over ``--snapshot`` or, by default, a snapshot built for the run: an
   *untrained* model (the default ``ModelConfig``: GRU, D = 64, 30 items read)
   over ``--items`` items. Training changes the weights, not the work per request.

Every request is ``POST /recommend`` with its own ``--history-length``-item
history (random items of the snapshot, every tenth disliked) and ``k = --k``.
The client runs on the same machine, so both servers share the CPU with it; the
ratio of the two travels better than either rate. Printed as a table, written to
``serving.json`` and ``serving.png`` (req/s and p99 vs. concurrency) in ``--out``.
The load average (``uptime``) before and after is recorded with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recoil.core.settings import add_arguments, add_command, from_args, to_flags

HELP = "requests/s and p50/p99 of recoil serve vs. a plain aiohttp handler, by concurrency"
CONCURRENCY = (1, 4, 16, 64)
MAX_CONCURRENCY = 1024  # connections of one level, each a file of this process and the server
MAX_ITEMS = 10_000_000  # items of the built snapshot: a few GB of rows and index at D = 64


def register(sub: Any) -> None:
    from serving.batching import BatchConfig

    parser = add_command(sub, "serving", run, HELP, __doc__ or "", raw=True)
    parser.add_argument(
        "--snapshot", type=Path, default=None,
        help="a snapshot store (or one snapshot directory) to serve; default: build one",
    )  # fmt: skip
    parser.add_argument("--items", type=int, default=5_000, help="items of the built snapshot")
    parser.add_argument("--history-length", type=int, default=20, help="items per history")
    parser.add_argument("--k", type=int, default=20, help="items asked for per request")
    parser.add_argument(
        "--concurrency", default=",".join(map(str, CONCURRENCY)),
        help="comma-separated numbers of concurrent client connections",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per level")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured time per level")
    add_arguments(parser, BatchConfig)
    parser.add_argument(
        "--out", type=Path, default=Path("bench-out"),
        help="directory for serving.png and serving.json",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from learner.snapshot import SnapshotError
    from recoil.core.errors import ConfigError
    from serving.batching import BatchConfig
    from serving.requests import MAX_HISTORY, MAX_K

    batching = from_args(BatchConfig, args)
    try:
        levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        raise ConfigError(f"--concurrency must be integers, got {args.concurrency!r}") from None
    if min(levels) < 1 or args.items < 2 or args.history_length < 0:
        raise ConfigError(
            "--concurrency must be >= 1, --items >= 2 and --history-length >= 0, got "
            f"{args.concurrency}, {args.items}, {args.history_length}"
        )
    if max(levels) > MAX_CONCURRENCY or args.items > MAX_ITEMS:
        raise ConfigError(
            f"--concurrency must be at most {MAX_CONCURRENCY} and --items at most {MAX_ITEMS}, "
            f"got {args.concurrency}, {args.items}"
        )
    if not 1 <= args.k <= MAX_K or args.history_length > MAX_HISTORY:  # else every answer a 400
        raise ConfigError(
            f"--k must be in 1..{MAX_K} and --history-length at most {MAX_HISTORY} (what recoil "
            f"serve answers), got {args.k}, {args.history_length}"
        )
    for flag, value, low in (("--seconds", args.seconds, 0.0), ("--warmup", args.warmup, -1.0)):
        if not (math.isfinite(value) and value > low):  # NaN ran the level forever
            raise ConfigError(f"{flag} {value}: must be a finite number of seconds "
                              f"{'> 0' if low == 0 else '>= 0'}")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="recoil-bench-serving-"))
    store = args.snapshot or build_store(work / "store", args.items)
    try:
        bodies, num_items = request_bodies(store, args.history_length, args.k)
    except (SnapshotError, OSError) as exc:
        if args.snapshot is None:  # the store built above: no setting to blame
            raise
        raise ConfigError(
            f"--snapshot {args.snapshot}: {exc}; give a snapshot store or one snapshot directory"
        ) from None
    load_before = os.getloadavg()
    rows = _measure(args, batching, store, bodies, levels, work)
    load_after = os.getloadavg()
    result = {
        "snapshot": str(store),
        "built_untrained": args.snapshot is None,
        "items": num_items,
        "history_length": args.history_length,
        "k": args.k,
        "batching": {"batch_max_size": batching.batch_max_size,
                     "batch_max_wait_ms": batching.batch_max_wait_ms,
                     "worker_threads": batching.worker_threads},
        "seconds_per_level": args.seconds,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rows": rows,
    }  # fmt: skip
    print(_table(rows))
    print(f"load average (1, 5, 15 min): before {_load(load_before)}, after {_load(load_after)}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(args.out / "serving.png", rows, result)
    print(f"wrote {args.out / 'serving.json'} and {args.out / 'serving.png'}")
    return 0


def build_store(store: Path, num_items: int, seed: int = 0) -> Path:
    """A store holding one snapshot of an untrained default model over ``num_items`` items
    (``i0``.., a creator per 10 items, a cluster per 100)."""
    import torch

    from learner.model import ModelConfig, SequenceRecommender
    from learner.snapshot import ItemMeta
    from learner.snapshot_publish import publish_snapshot
    from learner.vocab import Vocabularies, Vocabulary

    items = [f"i{j}" for j in range(num_items)]
    creators = [f"c{j}" for j in range(max(1, num_items // 10))]
    meta = {item: ItemMeta(f"c{j // 10}", f"k{j // 100}") for j, item in enumerate(items)}
    vocabs = Vocabularies(Vocabulary(items), Vocabulary(creators))
    torch.manual_seed(seed)
    config = ModelConfig(num_items=len(vocabs.items), num_creators=len(vocabs.creators))
    model = SequenceRecommender(config)
    info = publish_snapshot(store, model, vocabs, "feature_and_labels", meta, 0, {})
    print(f"built snapshot v{info.version}: {num_items:,} items, untrained {config.encoder}")
    return store


def request_bodies(store: Path, length: int, k: int, count: int = 512) -> tuple[list[bytes], int]:
    """``count`` different ``POST /recommend`` bodies over the snapshot's items."""
    import numpy as np

    from learner.snapshot import load_snapshot

    snapshot = load_snapshot(store)
    items = snapshot.item_ids()
    rng = np.random.default_rng(1)
    bodies = []
    for _ in range(count):
        history = []
        for t, j in enumerate(rng.integers(len(items), size=length).tolist()):
            meta = snapshot.item_meta(items[j])
            creator = meta.creator_id if meta is not None and meta.creator_id else "c"
            history.append([items[j], creator, None, t % 10 == 9, 3, 1, 1000.0 + t])
        bodies.append(json.dumps({"history": history, "k": k}).encode())
    return bodies, len(items)


def _measure(
    args: argparse.Namespace,
    batching: Any,
    store: Path,
    bodies: list[bytes],
    levels: list[int],
    work: Path,
) -> list[dict[str, Any]]:
    from recoil.broker.embedded import free_port
    from recoil.core.processes import ProcessGroup, recoil_command

    rows = []
    with ProcessGroup(work / "logs") as group:
        port = free_port()
        argv = ["serve", "--store", str(store), "--port", str(port), "--history-url", ""]
        serve = group.start("serve", recoil_command(*argv, *to_flags(batching)))
        serve_url = f"http://127.0.0.1:{port}"
        _wait_ready(f"{serve_url}/readyz", group)
        answer = asyncio.run(_post_once(f"{serve_url}/recommend", bodies[0]))
        (work / "answer.json").write_bytes(answer)
        plain_port = free_port()
        group.start(
            "plain",
            [sys.executable, "-m", "bench.serving", str(plain_port), str(work / "answer.json")],
        )
        plain_url = f"http://127.0.0.1:{plain_port}"
        _wait_ready(f"{plain_url}/readyz", group)
        for name, url, pid in (
            ("plain", plain_url, group.children[-1].process.pid),
            ("serve", serve_url, serve.process.pid),
        ):
            for level in levels:
                group.check()
                row = asyncio.run(
                    _drive(f"{url}/recommend", bodies, level, args.warmup, args.seconds, pid)
                )
                row["server"] = name
                rows.append(row)
                print(
                    f"  {name:5s} c={level:3d}: {row['requests_per_second']:8,.0f} req/s  "
                    f"p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  "
                    f"server CPU {row['server_cpu_ms_per_request']:.2f} ms/req",
                    flush=True,
                )
    return rows


def _wait_ready(url: str, group: Any, timeout: float = 120.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        group.check()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} was not ready after {timeout}s")


async def _post_once(url: str, body: bytes) -> bytes:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(url, data=body) as response:
        response.raise_for_status()
        return await response.read()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(
    url: str, bodies: list[bytes], concurrency: int, warmup: float, seconds: float, pid: int
) -> dict[str, Any]:
    """``concurrency`` connections posting back to back; latencies of requests that
    finished inside the measured window."""
    import aiohttp
    import numpy as np

    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + warmup
    stop = start + seconds

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        i = n
        while (now := time.perf_counter()) < stop:
            async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as r:
                await r.read()
                ok = r.status == 200
            done = time.perf_counter()
            if now >= start:
                if ok:
                    latencies.append(done - now)
                else:
                    errors += 1
            i += concurrency

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu_at_start = None

        async def mark() -> None:
            nonlocal cpu_at_start
            await asyncio.sleep(max(0.0, start - time.perf_counter()))
            cpu_at_start = _cpu_seconds(pid)

        marker = asyncio.create_task(mark())
        await asyncio.gather(*(client(n, session) for n in range(concurrency)))
        await marker
        cpu = _cpu_seconds(pid) - (cpu_at_start or 0.0)
    ms = np.array(latencies) * 1000
    count = len(latencies)
    return {
        "concurrency": concurrency,
        "requests": count,
        "errors": errors,
        "requests_per_second": count / seconds,
        "p50_ms": float(np.percentile(ms, 50)) if count else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if count else float("nan"),
        "server_cpu_ms_per_request": cpu * 1000 / count if count else float("nan"),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    plain = {r["concurrency"]: r for r in rows if r["server"] == "plain"}
    lines = [
        f"{'conc':>5} | {'plain req/s':>11} {'p50':>6} {'p99':>6} | "
        f"{'serve req/s':>11} {'p50':>6} {'p99':>6} {'cpu/req':>7} | {'ratio':>5}",
    ]
    for row in (r for r in rows if r["server"] == "serve"):
        base = plain[row["concurrency"]]
        # a level too short (or too crowded) for one answer has no rate to divide by
        plain_rate = base["requests_per_second"]
        row["ratio_to_plain"] = row["requests_per_second"] / plain_rate if plain_rate else math.nan
        lines.append(
            f"{row['concurrency']:>5} | {base['requests_per_second']:>11,.0f} "
            f"{base['p50_ms']:>6.1f} {base['p99_ms']:>6.1f} | {row['requests_per_second']:>11,.0f} "
            f"{row['p50_ms']:>6.1f} {row['p99_ms']:>6.1f} {row['server_cpu_ms_per_request']:>7.2f}"
            f" | {row['ratio_to_plain']:>5.2f}"
        )
    lines.append("(latencies in ms; cpu/req: recoil serve's CPU ms per answered request)")
    return "\n".join(lines)


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


def _plot(path: Path, rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate, tail) = plt.subplots(1, 2, figsize=(10, 4))
    for name, label in (("plain", "plain aiohttp handler"), ("serve", "recoil serve")):
        mine = [r for r in rows if r["server"] == name]
        levels = [r["concurrency"] for r in mine]
        rate.plot(levels, [r["requests_per_second"] for r in mine], marker="o", label=label)
        tail.plot(levels, [r["p99_ms"] for r in mine], marker="o", label=label)
    for ax, ylabel in ((rate, "requests/s"), (tail, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    b = result["batching"]
    fig.suptitle(
        f"POST /recommend, {result['items']:,} items, history {result['history_length']}, "
        f"k {result['k']}; batch {b['batch_max_size']} / {b['batch_max_wait_ms']} ms; "
        f"load {result['load_average_before'][0]:.1f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plain_server(port: int, answer: Path) -> None:
    """The ceiling: aiohttp answering every ``POST /recommend`` with the same bytes."""
    from aiohttp import web

    body = answer.read_bytes()

    async def recommend(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/recommend", recommend)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":  # the ceiling's child process: python -m bench.serving PORT ANSWER
    plain_server(int(sys.argv[1]), Path(sys.argv[2]))
