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

Nothing a client sends stops the server or gets a 500: bodies over
``MAX_BODY_BYTES`` (or of more values than any request holds) are a 413, a body
not sent in full within
``ServeConfig.body_timeout_s`` a 408, a ``Content-Type`` that is not JSON a 415,
JSON the decoder cannot take (malformed, nested too deeply, an integer of
thousands of digits) and out-of-range ``k`` a 400, each with a reason; unknown
paths and methods get a 404 / 405 in the same JSON shape. History items the
snapshot has no row for (newer than the model: normal for live histories) are
served, encoded as the unknown item, and counted in the answer's
``unknown_items``; a POST body with ``"unknown_items": "reject"`` gets a 422
naming them instead. A client that goes away before sending its whole body is
counted as status 499 (see ``CLIENT_CLOSED_REQUEST``). No answer holds ``NaN`` or
``Infinity`` (not JSON): histories are checked finite wherever they come from, and
a snapshot that scores an item non-finite is a 500 that says so.

Large POST bodies (over ``LARGE_BODY_BYTES``: a full batch takes ~1 s to decode
and check) are parsed on a thread of their own, and large batch answers (over
``LARGE_ANSWER_ITEMS`` items: 1024 histories at k = 500 take ~0.5 s to write) are
written there, so the event loop keeps answering meanwhile (``/healthz`` included).

Batching (``serving.batching``): the snapshot work of concurrent requests runs as
one forward pass and one search on a single worker thread, gathered for at most
``BatchConfig.batch_max_wait_ms``; answers are those each request would get alone.

Hot swap: a watcher loads a newer snapshot off the event loop and replaces one
reference; each request reads that reference once, so in-flight requests finish
on the snapshot they started with and no request fails during a swap. Snapshots
are never mutated after loading (faiss indexes are not safe to mutate while
searched). A version that fails to load is refused in one log line (and counted) and the
one being served stays; with none served yet (at start), the newest older version that
loads is served instead (``watch_snapshots``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiohttp import hdrs, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from recoil.core.protocol_log import quiet_protocol_errors
from recoil.core.records import EXCLUDE_SEEN, HistoryItem
from recoil.core.user_paths import decode_user_id
from serving.batching import MicroBatcher, Query
from serving.config import ServeConfig
from serving.metrics import ServingMetrics
from serving.requests import (
    LARGE_BODY_BYTES,
    MAX_BODY_BYTES,
    BadRequestError,
    BatchRequest,
    RecommendRequest,
    check_content_type,
    parse_batch_body,
    parse_body,
    parse_k,
    parse_recommend_body,
    query_value,
)

log = logging.getLogger(__name__)

_Posted = TypeVar("_Posted", RecommendRequest, BatchRequest)  # a POST body, parsed

# The status a request is counted under when its client closed the connection before the
# answer could be sent (nginx's "client closed request"): no answer went out, and it is
# not the server failing, so it must not count as a 500 (which pages someone through
# RecoilServingErrorRatio), yet a burst of them is worth seeing, so it is counted.
CLIENT_CLOSED_REQUEST = 499

# Batch answers of more items than this are written on the parsing thread: ~1 us an item
# (describing it, then encoding it), so this is ~5 ms, where a thread starts to pay (see
# serving.requests.LARGE_BODY_BYTES).
LARGE_ANSWER_ITEMS = 5000

# Every JSON answer: NaN and Infinity are not JSON (Python writes them bare by default,
# and strict parsers refuse the whole answer); a value that is one fails loudly here.
_dumps = functools.partial(json.dumps, allow_nan=False)


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
    """The history service could not answer, or answered something that is not a valid
    history (a 503 for the client, not a 4xx)."""


class _ClientGoneError(Exception):
    """The client closed the connection while its body was being read."""


@dataclass
class SnapshotHolder:
    """One reference to the snapshot being served, swapped whole."""

    snapshot: ServableSnapshot | None = None
    swapped_at: float = field(default_factory=time.time)

    def swap(self, snapshot: ServableSnapshot) -> None:
        self.snapshot = snapshot
        self.swapped_at = time.time()


# How many of the store's newest versions the watcher tries, newest first, while nothing
# is served (at start): a bad newest version then costs one refused load, not 503s until
# the learner publishes again. Few: each load reads and checks a whole snapshot, and a
# model many versions old is rarely worth serving.
FALLBACK_VERSIONS = 5


def versions_to_try(
    newest: int | None, listed: Sequence[int], served: int | None, depth: int = FALLBACK_VERSIONS
) -> list[int]:
    """The versions to load, newest first, before the first that loads is swapped in.

    With a snapshot served, only ``newest`` and only if newer: a bad new version is
    refused and the served one stays. With none served, ``newest`` and then the older
    ``listed`` versions, ``depth`` in all, so a bad newest version (or a ``LATEST`` that
    names a missing one) falls back to the newest one that loads.
    """
    if newest is None:
        return []
    if served is not None:
        return [newest] if newest > served else []
    older = sorted((v for v in set(listed) if v < newest), reverse=True)
    return [newest, *older][:depth]


async def watch_snapshots(
    holder: SnapshotHolder,
    latest_version: Callable[[], int | None],
    load: Callable[[int], ServableSnapshot],
    metrics: ServingMetrics,
    interval: float = 0.5,
    versions: Callable[[], Sequence[int]] | None = None,
) -> None:
    """Poll for newer versions; load each in a thread and swap it in.

    A version that fails to load is refused with one log line, counted in
    ``recoil_serving_snapshots_refused_total`` and not tried again (a published version
    never changes; a newer one is loaded when it appears), so a bad snapshot costs one
    load, not one every poll. Whatever is being served stays served. With nothing served
    yet, older ``versions`` (the store's, ascending; without them, none) are tried after a
    refused newest one (``versions_to_try``); without one that loads, requests keep getting
    503. A store that cannot be read is logged once, until the failure changes.
    """
    refused: set[int] = set()
    failure: str | None = None  # the last failure to read the store, already logged
    while True:
        served = holder.snapshot.version if holder.snapshot else None
        listed: Sequence[int] = ()  # older versions to fall back on: only with none served
        try:
            newest = await asyncio.to_thread(latest_version)
            if versions is not None and served is None and newest is not None:
                listed = await asyncio.to_thread(versions)
            failure = None
        except Exception as exc:  # the store itself: unreadable, or not a directory
            newest = None
            if _one_line(exc) != failure:
                failure = _one_line(exc)
                log.error("cannot look for new snapshots (%s); %s", failure, _still_serving(holder))
        todo = [v for v in versions_to_try(newest, listed, served) if v not in refused]
        for i, version in enumerate(todo):
            try:
                snapshot = await asyncio.to_thread(load, version)
            except Exception as exc:  # a bad snapshot must not stop serving the current one
                refused.add(version)
                metrics.snapshots_refused.inc()
                fallback = todo[i + 1] if i + 1 < len(todo) else None
                log.error("refused snapshot version %d (%s); %s", version, _one_line(exc),
                          _still_serving(holder, fallback))  # fmt: skip
                continue
            holder.swap(snapshot)
            metrics.snapshot_version.set(snapshot.version)
            if newest is not None and snapshot.version < newest:
                log.warning("serving snapshot version %d, the newest that loads (version %d "
                            "was refused)", snapshot.version, newest)  # fmt: skip
            else:
                log.info("serving snapshot version %d", snapshot.version)
            break
        await asyncio.sleep(interval)


def _one_line(exc: BaseException) -> str:
    """``exc`` as one log line of bounded length (FAISS and torch write several)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def _still_serving(holder: SnapshotHolder, fallback: int | None = None) -> str:
    if holder.snapshot is None and fallback is not None:
        return f"no snapshot is served yet: trying version {fallback}"
    if holder.snapshot is None:
        return "no snapshot is served yet: requests get 503"
    return f"still serving version {holder.snapshot.version}"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _error(status: int, error: str, reason: str) -> web.Response:
    return _json({"error": error, "reason": reason}, status=status)


def _http_error(request: web.Request, exc: web.HTTPException, endpoints: list[str]) -> web.Response:
    """aiohttp's own error answers (the router's 404 and 405 above all) in the API's shape."""
    path = request.path if len(request.path) <= 200 else f"{request.path[:200]}..."
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = _error(405, "method_not_allowed",
                          f"{request.method} is not allowed on {path}; use {allowed}")  # fmt: skip
        response.headers[hdrs.ALLOW] = ",".join(sorted(exc.allowed_methods))
        return response
    if isinstance(exc, web.HTTPNotFound):
        return _error(404, "not_found",
                      f"no endpoint at {path}; the API has {', '.join(endpoints)}")  # fmt: skip
    reason = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else exc.reason
    response = _error(exc.status, exc.reason.lower().replace(" ", "_"), reason)
    for name in (hdrs.ALLOW, hdrs.LOCATION, hdrs.RETRY_AFTER):
        if name in exc.headers:
            response.headers[name] = exc.headers[name]
    return response


def _items(snapshot: ServableSnapshot, ranked: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Ranked items as JSON, with creator and cluster where the snapshot knows them."""
    describe = getattr(snapshot, "item_meta", None)
    items = []
    for item, score in ranked:
        if not math.isfinite(score):  # a model with NaN weights: a fault of the snapshot
            log.error("snapshot version %d scored item %s %s", snapshot.version, item, score)
            raise web.HTTPInternalServerError(
                text=_dumps({"error": "bad_snapshot", "reason": (
                    f"snapshot version {snapshot.version} gave item {item!r} the score "
                    f"{score} (not finite); its weights are likely corrupt")}),
                content_type="application/json",
            )  # fmt: skip
        entry: dict[str, Any] = {"item_id": item, "score": round(float(score), 6)}
        meta = describe(item) if describe is not None else None
        if meta is not None:
            entry["creator_id"] = meta.creator_id
            entry["cluster_id"] = meta.cluster_id
        items.append(entry)
    return items


def _batch_answer(
    snapshot: ServableSnapshot, head: dict[str, Any], ranked: list[list[tuple[str, float]]]
) -> bytes:
    """``json.dumps({**head, "results": [...]})``, written one result at a time: the encoder
    holds the GIL for a whole call, so on a thread one call for 10^5 items would stall the
    event loop as much as writing it there would."""
    results = ", ".join(_dumps(_items(snapshot, one)) for one in ranked)
    return f'{_dumps(head)[:-1]}, "results": [{results}]}}'.encode()


def unknown_items(
    snapshot: ServableSnapshot, histories: Sequence[Sequence[HistoryItem]]
) -> list[str]:
    """History item ids ``snapshot`` has no row for, sorted (none if it cannot tell)."""
    check = getattr(snapshot, "unknown_items", None)
    if check is None:
        return []
    return sorted(check({item.item_id for history in histories for item in history}))


def _reject_unknown(snapshot: ServableSnapshot, unknown: list[str]) -> web.Response:
    # Each id cut to 40 characters: ids come from the client, unbounded, and 20 of them
    # whole made the reason as large as the body (8 MB).
    shown = ", ".join(i if len(i) <= 40 else f"{i[:40]}..." for i in unknown[:20]) + (
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
    config: ServeConfig | None = None,
) -> web.Application:
    """The aiohttp application; ``background`` coroutines run for the app's lifetime.

    ``batcher`` answers from snapshots (default: ``BatchConfig()``'s); the app closes it.
    ``config``: the body timeout (default ``ServeConfig()``'s).
    """
    settings = config or ServeConfig()
    quiet_protocol_errors()  # a request aiohttp cannot parse: one line, not a traceback
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    batched = batcher or MicroBatcher()
    # Large bodies are decoded and checked here rather than on the event loop. Not on the
    # batcher's thread: a slow parse would hold up every forward pass queued behind it.
    # One thread: more would only contend with the loop for the GIL on a small machine.
    parsing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recoil-parse")

    @web.middleware
    async def measure(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route.resource
        # Unmatched paths share one label, so a scan of random URLs adds no series.
        endpoint = route.canonical if route is not None else "unmatched"
        start = time.perf_counter()
        status = 500  # any other exception: aiohttp answers it with a 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            # aiohttp cancels a handler when its client disconnects (with
            # handler_cancellation) or at shutdown: no answer went out, the server did
            # not fail.
            status = CLIENT_CLOSED_REQUEST
            raise
        finally:
            metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)

    @web.middleware
    async def json_errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every error answer as ``{"error", "reason"}``: aiohttp's plain-text ones (404, 405)
        and a 500 for a fault of the server (logged with its traceback, as aiohttp would)."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                raise
            return _http_error(request, exc, endpoints)
        except Exception:
            log.exception("answering %s %s failed", request.method, request.path[:200])
            return _error(500, "internal_error",
                          "serving failed on this request; its log has the traceback")  # fmt: skip

    app.middlewares.extend([measure, json_errors])

    def current() -> ServableSnapshot:
        snapshot = holder.snapshot
        if snapshot is None:
            raise web.HTTPServiceUnavailable(
                text=_dumps({"error": "no_snapshot", "reason": "no model snapshot yet"}),
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
        return _json(
            {
                **extra,
                "model_version": snapshot.version,
                "history_length": len(history),
                "unknown_items": len(unknown),
                "items": _items(snapshot, ranked),
            }
        )

    async def recommend_user(request: web.Request) -> web.Response:
        try:  # the segment as sent: aiohttp keeps escapes it cannot decode (%ff) as text
            user_id = decode_user_id(request.rel_url.raw_parts[-1])
        except ValueError as exc:
            return _error(400, "bad_user_id", str(exc))
        try:
            k = parse_k(query_value(request.query.getall("k", []), "k"))
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

    async def read_body(request: web.Request) -> bytes:
        """The whole body, within ``body_timeout_s`` (aiohttp bounds its size, not its time)."""
        try:
            async with asyncio.timeout(settings.body_timeout_s):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BadRequestError(f"body is over {MAX_BODY_BYTES} bytes", 413) from None
        except TimeoutError:
            length = request.content_length
            promised = "chunked" if length is None else f"Content-Length promised {length} bytes"
            raise BadRequestError(
                f"the body did not arrive in full within {settings.body_timeout_s:g} s "
                f"({promised})", 408
            ) from None  # fmt: skip
        except web.RequestPayloadError as exc:  # e.g. broken chunked encoding
            raise BadRequestError(f"the body could not be read: {exc}") from None
        except ConnectionResetError:  # the client closed the connection mid-body
            raise _ClientGoneError from None

    async def parse_posted(raw: bytes, parse: Callable[[Any], _Posted]) -> _Posted:
        if len(raw) <= LARGE_BODY_BYTES:  # cheaper here than a trip to the thread
            return parse_body(raw, parse)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(parsing, parse_body, raw, parse)

    def posted(
        parse: Callable[[Any], _Posted],
        answer: Callable[[ServableSnapshot, _Posted, list[str]], Awaitable[web.Response]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A POST handler: the body parsed and checked (``unknown_items``) the same way for
        one history and for a batch, then ``answer`` from one snapshot."""

        async def handler(request: web.Request) -> web.Response:
            try:
                check_content_type(request.headers.get(hdrs.CONTENT_TYPE))
                req = await parse_posted(await read_body(request), parse)
            except BadRequestError as exc:
                response = _error(exc.status, "bad_request", exc.reason)
                if exc.status == 408:  # the rest of the body may still come: not reusable
                    response.force_close()
                return response
            except _ClientGoneError:
                # Nobody to answer: aiohttp drops this response quietly (a debug line).
                return web.Response(status=CLIENT_CLOSED_REQUEST)
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
        head = {"model_version": snapshot.version, "unknown_items": len(unknown)}
        if sum(len(one) for one in ranked) <= LARGE_ANSWER_ITEMS:
            return _json({**head, "results": [_items(snapshot, one) for one in ranked]})
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(parsing, _batch_answer, snapshot, head, ranked)
        return web.Response(body=body, content_type="application/json")

    async def snapshot_info(request: web.Request) -> web.Response:
        snapshot = current()
        body: dict[str, Any] = {"version": snapshot.version, "loaded_at": holder.swapped_at}
        # What the model has trained on (partition -> next offset), when the snapshot says.
        for name in ("created_at", "step", "offsets"):
            value = getattr(snapshot, name, None)
            if value is not None:
                body[name] = {str(k): v for k, v in value.items()} if name == "offsets" else value
        return _json(body)

    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if holder.snapshot is None:
            return _error(503, "not_ready", "no model snapshot loaded yet")
        return _json({"status": "ready", "version": holder.snapshot.version})

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
    endpoints = sorted(
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.resource is not None and route.method != hdrs.METH_HEAD
    )

    async def run_background(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(make()) for make in background]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(batched.close)  # after the batch being computed
        await asyncio.to_thread(parsing.shutdown, True, cancel_futures=True)

    app.cleanup_ctx.append(run_background)
    return app
