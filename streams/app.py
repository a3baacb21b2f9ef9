"""The Faust app of a stream worker: source topic, history table, agent, web view, timers.

:func:`build_app` wires the parts for one :class:`~streams.config.StreamsConfig`;
the agent itself stays thin (take a batch, hand it to
:class:`~streams.processor.BatchProcessor`). The history view answers
``GET /history/{user_id}`` on the worker that owns the user's partition (other
workers forward the request through Faust's router):

    {"user_id": "u1", "columns": ["item_id", ...], "history": [[...], ...]}

rows oldest first, in :data:`recoil.core.records.HISTORY_COLUMNS` order; a user
never seen has an empty history. Its errors are JSON ``{"error", "reason"}``: a 400 for
a path segment that names no user (``recoil.core.user_paths``), a 405 for a method
other than GET or HEAD, and a 503 when the owner does not answer within
:data:`FORWARD_TIMEOUT_S` or cannot be reached (stopped, gone before the group has
rebalanced).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import faust
from aiohttp import ClientError, web
from faust.exceptions import SameNode
from faust.web import Request, Response, View

from recoil.core.kafka_settings import KafkaSettings
from recoil.core.records import HISTORY_COLUMNS
from recoil.core.user_paths import decode_user_id
from streams.config import StreamsConfig
from streams.consumer import BrokerView, RecoilConsumer, RecoilTransport
from streams.crashloop import CrashNotes
from streams.faust_internals import AppAdapter
from streams.metrics import StreamMetrics
from streams.processor import BatchProcessor
from streams.state import UserState
from streams.table import HistoryTable
from streams.topics import TABLE_NAME

log = logging.getLogger(__name__)

AGENT_NAME = "recoil.streams.history_agent"
# How long a worker waits for the owner of a user's partition to answer a forwarded
# history request: under serving's 2 s (serving/history.py), so that serving hears why.
# Faust's own client would wait 5 minutes for an owner that is stopped or partitioned.
FORWARD_TIMEOUT_S = 1.5


class StreamsApp(AppAdapter):
    """A Faust app whose consumer is :class:`~streams.consumer.RecoilConsumer`."""

    # Read by RecoilConsumer when Faust creates it (see build_app).
    offset_guard: bool = True
    hole_grace: float = 2.0
    fetch_topic: str | None = None  # whole fetches of this topic go to the agent
    fetch_batch_size: int = 500
    broker_view: BrokerView

    def consumer_transport(self) -> Any:
        return RecoilTransport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        await super().on_stop()
        if getattr(self, "broker_view", None) is not None:
            await self.broker_view.close()


@dataclass
class StreamsWorkerApp:
    """The app and the parts tests and the worker command reach into."""

    app: StreamsApp
    table: HistoryTable
    processor: BatchProcessor
    broker_view: BrokerView

    @property
    def consumer(self) -> RecoilConsumer:
        return cast(RecoilConsumer, self.app.consumer)


def canonical_url(config: StreamsConfig) -> str:
    """The URL other workers use to forward history requests to this one."""
    host = config.web_host
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"http://{host}:{config.web_port}"


def build_app(
    config: StreamsConfig,
    settings: KafkaSettings,
    metrics: StreamMetrics,
    partitions: int,
    notes: CrashNotes | None = None,
) -> StreamsWorkerApp:
    """A configured Faust app for ``partitions`` input partitions (not started).

    ``notes`` is where the worker keeps its crash note (streams.crashloop); without
    it the crash-loop rule is off.
    """
    app = StreamsApp(
        config.app_id,
        broker=settings.faust_broker(),
        broker_credentials=settings.faust_credentials(),
        store="rocksdb://" if config.store == "rocksdb" else "memory://",
        datadir=str(config.app_data_dir),
        processing_guarantee=config.processing_guarantee,
        topic_partitions=partitions,
        topic_replication_factor=config.replication_factor,
        consumer_auto_offset_reset="earliest",
        # No standby replicas: Faust marks *every* topic of a co-partitioned group as
        # standby (the input topic too), so with standbys a revoked input partition's
        # transactional producer is never stopped, and when the partition comes back
        # the fenced producer is reused: every send fails with ProducerFenced.
        table_standby_replicas=0,
        broker_session_timeout=config.session_timeout,
        broker_heartbeat_interval=config.heartbeat_interval,
        broker_commit_interval=config.commit_interval,
        # Batch sends: one produce request per event costs a syscall each, and with the
        # consumer's thread busy every syscall waits for the GIL.
        producer_linger=config.producer_linger,
        producer_max_batch_size=256 * 1024,
        producer_compression_type=(
            None if config.producer_compression == "none" else config.producer_compression
        ),
        web_enabled=True,
        web_bind=config.web_host,
        web_port=config.web_port,
        canonical_url=canonical_url(config),
        autodiscover=False,
        Monitor="streams.monitor:QuietMonitor",
    )
    table = HistoryTable(
        app,
        name=TABLE_NAME,
        default=None,
        key_type=bytes,  # raw UTF-8 user ids: the same bytes (and partition) as input keys
        value_type=bytes,  # UserState.to_bytes()
        partitions=partitions,
        help="Per-user history and recent event ids (streams.state.UserState)",
    )
    app.tables.add(table)
    processor = BatchProcessor(app, table, config, metrics, notes=notes)
    source = app.topic(
        config.input_topic, key_serializer="raw", value_serializer="raw", partitions=partitions
    )

    async def history_agent(stream: faust.StreamT[bytes]) -> None:
        # The agent's topic is what Faust subscribes to and assigns, either way.
        if config.fetch_batches:  # whole fetches, past Faust's stream (streams.consumer)
            consumer = cast(RecoilConsumer, app.consumer)
            while True:
                fetched = await consumer.next_batch()
                await processor.process_batch(fetched)
                consumer.ack_batch(fetched)
        else:
            batches = cast("faust.Stream[bytes]", stream).take_events(
                config.batch_size, within=config.batch_timeout
            )
            async for events in batches:
                await processor.process_batch(events)

    app.agent(source, name=AGENT_NAME, concurrency=1)(history_agent)

    class HistoryView(View):
        """Answers here when this worker owns the user's partition, else asks the owner
        through Faust's router as ``app.table_route`` does, but within a bound, and with
        a 503 that says why when the owner is silent or refuses (a 500 under Faust)."""

        async def get(self, request: Request, **match_info: str) -> Response:
            # aiohttp's request: the segment as sent, before yarl decoded (or kept) escapes
            segment = cast(web.Request, request).rel_url.raw_parts[-1]
            try:
                user_id = decode_user_id(segment)
            except ValueError as exc:
                return self.json({"error": "bad_user_id", "reason": str(exc)}, status=400)
            key = user_id.encode()  # the table's and the input topic's key
            try:
                owner = app.router.key_store(table.name, key)
            # KeyError: no assignment yet (the worker is starting or rebalancing); TypeError:
            # aiokafka's partitioner before the producer has the changelog topic's metadata
            # (a worker that just started and has written nothing: a 500 under Faust's
            # table_route)
            except (KeyError, TypeError):
                reason = f"no worker owns user {user_id!r}'s partition yet; ask again shortly"
                return self.json({"error": "no_owner", "reason": reason}, status=503)
            try:
                async with asyncio.timeout(FORWARD_TIMEOUT_S):
                    return await app.router.route_req(table.name, key, self.web, request)
            except SameNode:
                raw = table.get(key)
            except (ClientError, TimeoutError) as exc:
                failure = (
                    f"did not answer within {FORWARD_TIMEOUT_S} s"
                    if isinstance(exc, TimeoutError)
                    else f"could not be reached: {exc}"
                )
                reason = (
                    f"the worker that owns user {user_id!r} ({owner}) {failure}; "
                    "ask again once the group has rebalanced"
                )
                return self.json({"error": "owner_unreachable", "reason": reason}, status=503)
            history = UserState.from_bytes(raw).history if raw is not None else ()
            return self.json(
                {
                    "user_id": user_id,
                    "columns": list(HISTORY_COLUMNS),
                    "history": [item.to_row() for item in history],
                }
            )

        async def refuse(self, request: Request, **kwargs: Any) -> Response:
            """Any other method: a 405 in JSON (aiohttp's own is plain text)."""
            reason = f"{request.method} is not allowed on /history/{{user_id}}; use GET"
            return self.json({"error": "method_not_allowed", "reason": reason}, status=405,
                             headers={"Allow": "GET,HEAD"})  # fmt: skip

        post = put = patch = delete = options = refuse

    app.page("/history/{user_id}")(HistoryView)

    @web.middleware
    async def unknown_table_is_a_404(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Faust's diagnostic ``/router/{name}/`` looks the table up unchecked: a name it
        does not have was a 500, with a traceback in the log, for every such request."""
        name = request.match_info.get("name")
        if request.path.startswith("/router/") and name is not None and name not in app.tables:
            reason = f"no table {name[:100]!r}; this worker has {sorted(app.tables)}"
            return web.json_response({"error": "unknown_table", "reason": reason}, status=404)
        return await handler(request)

    cast(Any, app.web).web_app.middlewares.append(unknown_table_is_a_404)

    isolation = "read_committed" if config.exactly_once else "read_uncommitted"
    broker_view = BrokerView(settings.aiokafka(), isolation)

    if config.offset_guard:

        @app.timer(interval=config.hole_grace / 2)
        async def repair_holes() -> None:
            await processor.repair()

    gauges = GaugeUpdater(app, table, processor, metrics, config.input_topic)

    @app.timer(interval=1.0)
    async def update_gauges() -> None:
        gauges.update()

    # Not app.consumer.x = ...: touching app.consumer before the worker starts would
    # create the consumer early and freeze Faust's exactly-once switch to "off".
    app.offset_guard = config.offset_guard
    app.fetch_topic = config.input_topic if config.fetch_batches else None
    app.fetch_batch_size = config.batch_size
    app.hole_grace = config.hole_grace
    app.broker_view = broker_view
    return StreamsWorkerApp(app, table, processor, broker_view)


class GaugeUpdater:
    """Keeps the lag and table-size gauges current (called once a second)."""

    def __init__(
        self, app: Any, table: HistoryTable, processor: BatchProcessor, metrics: StreamMetrics,
        topic: str,
    ) -> None:  # fmt: skip
        self.app, self.table, self.processor, self.metrics = app, table, processor, metrics
        self.topic = topic
        self.lag_partitions: set[int] = set()
        self.counted_at_rebalance: int | None = None

    def update(self) -> None:
        if self.app.rebalancing:
            return
        self.update_lag()
        self.update_users()

    def update_lag(self) -> None:
        consumer: RecoilConsumer = self.app.consumer
        owned = consumer.owned(self.topic)
        for partition in self.lag_partitions - {tp.partition for tp in owned}:
            self.metrics.forget_partition(self.topic, partition)
        self.lag_partitions = {tp.partition for tp in owned}
        for tp in owned:
            end = consumer.highwater(tp)
            position = self.processor.next_offsets.get(tp.partition)
            if position is None:  # nothing processed since the last rebalance
                position = consumer.committed_offsets.get(tp)
            if end is not None and position is not None:
                self.metrics.set_lag(self.topic, tp.partition, int(end) - position)

    def update_users(self) -> None:
        # A full count walks the store: only after a rebalance; between, add new users.
        if self.counted_at_rebalance != self.app.rebalancing_count:
            self.processor.new_users = 0
            self.metrics.history_users.set(len(self.table))
            self.counted_at_rebalance = self.app.rebalancing_count
        elif self.processor.new_users:
            self.metrics.history_users.inc(self.processor.new_users)
            self.processor.new_users = 0
