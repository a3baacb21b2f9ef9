"""The recommend API: aiohttp handlers over a hot-swappable snapshot and a history source.

    GET  /recommend/{user_id}?k=10   live history (from the stream workers) -> top-k
    POST /recommend                  explicit history (stateless; counterfactual probes)
    POST /recommend/batch            many explicit histories, one snapshot answers all
    GET  /snapshot                   the version being served
    GET  /healthz, /readyz           liveness; readiness = a snapshot is loaded
    GET  /metrics                    Prometheus

Answers leave out the items of the history they are for, unless a POST body sends
``"exclude_seen": false`` (``recoil.core.records.EXCLUDE_SEEN``, the default the
simulator's recommenders share).

Nothing a client sends stops the server: bodies over ``MAX_BODY_BYTES`` are a
413, JSON the decoder cannot take (malformed, nested too deeply, an integer of
thousands of digits) and out-of-range ``k`` a 400, each with a reason. History
items the snapshot has no row for (newer than the model: normal for live
histories) are served, encoded as the unknown item, and counted in the answer's
``unknown_items``; a POST body with ``"unknown_items": "reject"`` gets a 422
naming them instead.

Batching (``serving.batching``): the snapshot work of concurrent requests runs as
one forward pass and one search on a single worker thread, gathered for at most
``BatchConfig.batch_max_wait_ms``; answers are those each request would get alone.

Hot swap: a watcher loads a newer snapshot off the event loop and replaces one
reference; each request reads that reference once, so in-flight requests finish
on the snapshot they started with and no request fails during a swap. Snapshots
are never mutated after loading (faiss indexes are not safe to mutate while
searched).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from recoil.core.records import EXCLUDE_SEEN, HistoryItem
from serving.batching import MicroBatcher, Query
from serving.metrics import ServingMetrics
from serving.requests import (
    MAX_BODY_BYTES,
    BadRequestError,
    BatchRequest,
    RecommendRequest,
    parse_batch_body,
    parse_json_body,
    parse_k,
    parse_recommend_body,
)

log = logging.getLogger(__name__)

_Posted = TypeVar("_Posted", RecommendRequest, BatchRequest)  # a POST body, parsed


class ServableSnapshot(Protocol):
    """What serving needs of a model snapshot."""

    @property
    def version(self) -> int: ...

    def recommend(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = EXCLUDE_SEEN
    ) -> list[list[tuple[str, float]]]: ...


class HistorySource(Protocol):
    """Where a user's live history comes from (the stream workers' table)."""

    async def history(self, user_id: str) -> tuple[HistoryItem, ...]: ...


class HistoryUnavailableError(RuntimeError):
    """The history service could not answer (a 503 for the client, not a 4xx)."""


@dataclass
class SnapshotHolder:
    """One reference to the snapshot being served, swapped whole."""

    snapshot: ServableSnapshot | None = None
    swapped_at: float = field(default_factory=time.time)

    def swap(self, snapshot: ServableSnapshot) -> None:
        self.snapshot = snapshot
        self.swapped_at = time.time()


async def watch_snapshots(
    holder: SnapshotHolder,
    latest_version: Callable[[], int | None],
    load: Callable[[int], ServableSnapshot],
    metrics: ServingMetrics,
    interval: float = 0.5,
) -> None:
    """Poll for newer versions; load each in a thread and swap it in."""
    while True:
        try:
            version = await asyncio.to_thread(latest_version)
            current = holder.snapshot.version if holder.snapshot else None
            if version is not None and (current is None or version > current):
                snapshot = await asyncio.to_thread(load, version)
                holder.swap(snapshot)
                metrics.snapshot_version.set(snapshot.version)
                log.info("serving snapshot version %d", snapshot.version)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bad snapshot must not stop serving the current one
            log.exception("loading a new snapshot failed; still serving the previous one")
        await asyncio.sleep(interval)


def _error(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


def _items(snapshot: ServableSnapshot, ranked: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Ranked items as JSON, with creator and cluster where the snapshot knows them."""
    describe = getattr(snapshot, "item_meta", None)
    items = []
    for item, score in ranked:
        entry: dict[str, Any] = {"item_id": item, "score": round(float(score), 6)}
        meta = describe(item) if describe is not None else None
        if meta is not None:
            entry["creator_id"] = meta.creator_id
            entry["cluster_id"] = meta.cluster_id
        items.append(entry)
    return items


def unknown_items(
    snapshot: ServableSnapshot, histories: Sequence[Sequence[HistoryItem]]
) -> list[str]:
    """History item ids ``snapshot`` has no row for, sorted (none if it cannot tell)."""
    check = getattr(snapshot, "unknown_items", None)
    if check is None:
        return []
    return sorted(check({item.item_id for history in histories for item in history}))


def _reject_unknown(snapshot: ServableSnapshot, unknown: list[str]) -> web.Response:
    shown = ", ".join(unknown[:20]) + (
        f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
    )
    return _error(
        422, "unknown_items",
        f"{len(unknown)} history items are unknown to snapshot version {snapshot.version}: "
        f"{shown} (send \"unknown_items\": \"ignore\" to serve them as the unknown item)",
    )  # fmt: skip


def create_app(
    holder: SnapshotHolder,
    history_source: HistorySource | None,
    registry: CollectorRegistry,
    metrics: ServingMetrics,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    batcher: MicroBatcher | None = None,
) -> web.Application:
    """The aiohttp application; ``background`` coroutines run for the app's lifetime.

    ``batcher`` answers from snapshots (default: ``BatchConfig()``'s); the app closes it.
    """
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    batched = batcher or MicroBatcher()

    @web.middleware
    async def measure(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route.resource
        endpoint = route.canonical if route is not None else "unmatched"
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)

    app.middlewares.append(measure)

    def current() -> ServableSnapshot:
        snapshot = holder.snapshot
        if snapshot is None:
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": "no_snapshot", "reason": "no model snapshot yet"}),
                content_type="application/json",
            )
        return snapshot

    async def respond(
        snapshot: ServableSnapshot,
        history: Sequence[HistoryItem],
        k: int,
        exclude_seen: bool,
        unknown: list[str],
        **extra: Any,
    ) -> web.Response:
        ranked = (await batched.recommend(snapshot, [Query(history, k, exclude_seen)]))[0]
        return web.json_response(
            {
                **extra,
                "model_version": snapshot.version,
                "history_length": len(history),
                "unknown_items": len(unknown),
                "items": _items(snapshot, ranked),
            }
        )

    async def recommend_user(request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        try:
            k = parse_k(request.query.get("k"))
        except BadRequestError as exc:
            return _error(exc.status, "bad_request", exc.reason)
        snapshot = current()
        if history_source is None:
            return _error(503, "no_history_source", "serving runs without --history-url")
        try:
            history = await history_source.history(user_id)
        except HistoryUnavailableError as exc:
            return _error(503, "history_unavailable", str(exc))
        last = history[-1].timestamp if history else None
        unknown = unknown_items(snapshot, [history])
        return await respond(snapshot, history, k, EXCLUDE_SEEN, unknown, user_id=user_id,
                             last_event_timestamp=last)  # fmt: skip

    async def read_json(request: web.Request) -> Any:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BadRequestError(f"body is over {MAX_BODY_BYTES} bytes", 413) from None
        return parse_json_body(raw)

    def posted(
        parse: Callable[[Any], _Posted],
        answer: Callable[[ServableSnapshot, _Posted, list[str]], Awaitable[web.Response]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A POST handler: the body parsed and checked (``unknown_items``) the same way for
        one history and for a batch, then ``answer`` from one snapshot."""

        async def handler(request: web.Request) -> web.Response:
            try:
                req = parse(await read_json(request))
            except BadRequestError as exc:
                return _error(exc.status, "bad_request", exc.reason)
            snapshot = current()
            unknown = unknown_items(snapshot, req.histories)
            if unknown and req.unknown_items == "reject":
                return _reject_unknown(snapshot, unknown)
            return await answer(snapshot, req, unknown)

        return handler

    async def recommend_history(
        snapshot: ServableSnapshot, req: RecommendRequest, unknown: list[str]
    ) -> web.Response:
        return await respond(snapshot, req.history, req.k, req.exclude_seen, unknown)

    async def recommend_batch(
        snapshot: ServableSnapshot, req: BatchRequest, unknown: list[str]
    ) -> web.Response:
        queries = [Query(history, req.k, req.exclude_seen) for history in req.histories]
        ranked = await batched.recommend(snapshot, queries)
        return web.json_response(
            {
                "model_version": snapshot.version,
                "unknown_items": len(unknown),
                "results": [_items(snapshot, one) for one in ranked],
            }
        )

    async def snapshot_info(request: web.Request) -> web.Response:
        snapshot = current()
        body: dict[str, Any] = {"version": snapshot.version, "loaded_at": holder.swapped_at}
        # What the model has trained on (partition -> next offset), when the snapshot says.
        for name in ("created_at", "step", "offsets"):
            value = getattr(snapshot, name, None)
            if value is not None:
                body[name] = {str(k): v for k, v in value.items()} if name == "offsets" else value
        return web.json_response(body)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if holder.snapshot is None:
            return _error(503, "not_ready", "no model snapshot loaded yet")
        return web.json_response({"status": "ready", "version": holder.snapshot.version})

    async def metrics_page(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app.router.add_get("/recommend/{user_id}", recommend_user)
    app.router.add_post("/recommend", posted(parse_recommend_body, recommend_history))
    app.router.add_post("/recommend/batch", posted(parse_batch_body, recommend_batch))
    app.router.add_get("/snapshot", snapshot_info)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)

    async def run_background(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(make()) for make in background]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(batched.close)  # after the batch being computed

    app.cleanup_ctx.append(run_background)
    return app
