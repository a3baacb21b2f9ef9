"""The recommend API's HTTP layer: 4xx with reasons, readiness, hot swap under load.

The snapshot here is a small deterministic recommender that satisfies serving's
``ServableSnapshot`` protocol, so the HTTP behaviour is checked exactly; the
real-snapshot path is covered by the loop's integration test.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from recoil.core.records import HistoryItem
from serving.app import (
    HistoryUnavailableError,
    SnapshotHolder,
    create_app,
    watch_snapshots,
)
from serving.metrics import ServingMetrics
from serving.requests import MAX_BODY_BYTES
from tests.support.ranked import RankedSnapshot


class TableHistory:
    def __init__(self, table: dict[str, tuple[HistoryItem, ...]]) -> None:
        self.table = table

    async def history(self, user_id: str) -> tuple[HistoryItem, ...]:
        if user_id == "broken":
            raise HistoryUnavailableError("worker for partition 3 did not answer")
        return self.table.get(user_id, ())


ITEM = HistoryItem("i0", "c0", "k0", True, 5, 0, 100.0)


async def _client(
    holder: SnapshotHolder, **kwargs: Any
) -> tuple[TestClient[Any, Any], ServingMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = ServingMetrics(registry)
    app = create_app(holder, TableHistory({"u1": (ITEM,)}), registry, metrics, **kwargs)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, metrics, registry


def test_readiness_and_no_snapshot_is_503() -> None:
    async def run() -> None:
        holder = SnapshotHolder()
        client, _, _ = await _client(holder)
        try:
            assert (await client.get("/healthz")).status == 200
            resp = await client.get("/readyz")
            assert resp.status == 503
            resp = await client.post("/recommend", json={"history": []})
            assert resp.status == 503 and (await resp.json())["error"] == "no_snapshot"
            holder.swap(RankedSnapshot(3))
            assert (await (await client.get("/readyz")).json())["version"] == 3
        finally:
            await client.close()

    asyncio.run(run())


def test_recommend_for_user_and_for_explicit_history() -> None:
    async def run() -> None:
        client, _, registry = await _client(SnapshotHolder(RankedSnapshot(7)))
        try:
            body = await (await client.get("/recommend/u1?k=3")).json()
            assert body["model_version"] == 7
            assert body["history_length"] == 1
            assert [i["item_id"] for i in body["items"]] == ["i1", "i2", "i3"]
            resp = await client.post(
                "/recommend",
                json={"history": [ITEM.to_row()], "k": 2, "exclude_seen": False},
            )
            assert [i["item_id"] for i in (await resp.json())["items"]] == ["i0", "i1"]
            resp = await client.post(
                "/recommend/batch",
                json={"histories": [[], [ITEM.to_row()]], "k": 2},
            )
            body = await resp.json()
            assert body["model_version"] == 7
            assert [[i["item_id"] for i in r] for r in body["results"]] == [
                ["i0", "i1"],
                ["i1", "i2"],
            ]
            resp = await client.post("/recommend/batch", json={"histories": [[["i"]]]})
            assert resp.status == 400
            assert "histories[0]: history[0] must have" in (await resp.json())["reason"]
            resp = await client.get("/recommend/broken")
            assert resp.status == 503 and (await resp.json())["error"] == "history_unavailable"
            ok = registry.get_sample_value(
                "recoil_serving_requests_total",
                {"endpoint": "/recommend/{user_id}", "status": "200"},
            )
            assert ok == 1.0
        finally:
            await client.close()

    asyncio.run(run())


BAD_POSTS: list[tuple[Any, int, str]] = [
    ([1, 2], 400, "JSON object"),
    ({"history": "x"}, 400, "'history' must be a list"),
    ({"history": [], "k": 0}, 400, "between 1 and"),
    ({"history": [], "k": "5"}, 400, "integer"),
    ({"history": [], "colour": 1}, 400, "unknown fields"),
    ({"history": [{"item_id": "i"}]}, 400, "history[0].creator_id"),
    ({"history": [["i", "c", None, 0, 9, 0, 1.0]]}, 400, "dwell_bucket"),
    ({"history": [["i", "c"]]}, 400, "columns"),
    ({"history": [ITEM.to_row()] * 1001}, 413, "limit"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_POSTS)
def test_bad_requests_get_4xx_with_reason(body: Any, status: int, fragment: str) -> None:
    async def run() -> None:
        client, _, _ = await _client(SnapshotHolder(RankedSnapshot(1)))
        try:
            resp = await client.post("/recommend", json=body)
            assert resp.status == status
            assert fragment in (await resp.json())["reason"]
            resp = await client.post("/recommend", data=b"{not json")
            assert resp.status == 400 and "not JSON" in (await resp.json())["reason"]
            resp = await client.get("/recommend/u1?k=abc")
            assert resp.status == 400 and "integer" in (await resp.json())["reason"]
        finally:
            await client.close()

    asyncio.run(run())


HOSTILE: list[tuple[str, str, bytes, int, str]] = [
    ("oversized body", "/recommend", b'{"history": [' + b" " * MAX_BODY_BYTES + b"]}", 413,
     f"over {MAX_BODY_BYTES} bytes"),
    ("deeply nested", "/recommend", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ("nested in history", "/recommend/batch",
     b'{"histories": [' + b"[" * 5000 + b"]" * 5000 + b"]}", 400, "nested too deeply"),
    ("k of 5000 digits", "/recommend", b'{"history": [], "k": ' + b"9" * 5000 + b"}", 400,
     "JSON decoding refused"),
    ("k of 10^9", "/recommend", b'{"history": [], "k": 1000000000}', 400, "between 1 and 500"),
    ("not UTF-8", "/recommend", b'{"history": ["\xff"]}', 400, "not UTF-8"),
    ("unknown items rejected", "/recommend",
     b'{"history": [["i1","c",null,0,1,0,1.0],["new9","c",null,0,1,0,2.0]],'
     b' "unknown_items": "reject"}', 422, "1 history items are unknown to snapshot version 1"),
    ("unknown items, batch", "/recommend/batch",
     b'{"histories": [[["x","c",null,0,1,0,1.0]]], "unknown_items": "reject"}', 422, ": x"),
    ("bad unknown_items", "/recommend", b'{"history": [], "unknown_items": "drop"}', 400,
     "'unknown_items' must be one of"),
]  # fmt: skip


def test_hostile_requests_get_4xx_with_reason_and_serving_goes_on() -> None:
    async def run() -> None:
        client, _, registry = await _client(SnapshotHolder(RankedSnapshot(1)))
        try:
            for name, path, body, status, fragment in HOSTILE:
                resp = await client.post(path, data=body)
                assert resp.status == status, name
                assert fragment in (await resp.json())["reason"], name
            for query in ("k=" + "9" * 5000, "k=1000000000", "k=-1"):
                resp = await client.get(f"/recommend/u1?{query}")
                assert resp.status == 400 and "k must" in (await resp.json())["reason"], query
            # Unknown items are served by default (live histories hold items newer than the
            # snapshot), and counted in the answer.
            resp = await client.post(
                "/recommend", json={"history": [["new1", "c", None, 0, 1, 0, 1.0]], "k": 2}
            )
            body = await resp.json()
            assert resp.status == 200 and body["unknown_items"] == 1
            assert [i["item_id"] for i in body["items"]] == ["i0", "i1"]
        finally:
            await client.close()
        errors = sum(
            registry.get_sample_value(
                "recoil_serving_requests_total", {"endpoint": e, "status": "500"}
            )
            or 0.0
            for e in ("/recommend", "/recommend/batch", "/recommend/{user_id}")
        )
        assert errors == 0.0

    asyncio.run(run())


def test_hot_swap_under_load_drops_no_request() -> None:
    async def run() -> None:
        published = {"latest": 1}

        def load(version: int) -> RankedSnapshot:
            return RankedSnapshot(version)

        holder = SnapshotHolder(RankedSnapshot(1))
        registry = CollectorRegistry()
        metrics = ServingMetrics(registry)
        watcher = lambda: watch_snapshots(  # noqa: E731
            holder, lambda: published["latest"], load, metrics, interval=0.01
        )
        app = create_app(holder, None, registry, metrics, background=[watcher])
        client = TestClient(TestServer(app))
        await client.start_server()
        versions: list[int] = []
        try:
            for i in range(300):
                if i % 50 == 0:
                    published["latest"] += 1
                resp = await client.post("/recommend", json={"history": [], "k": 1})
                assert resp.status == 200
                versions.append((await resp.json())["model_version"])
                await asyncio.sleep(0.002)
            # The last publish is swapped in within a bounded wait (not assumed to have
            # happened by the 300th request), then served.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while holder.snapshot is None or holder.snapshot.version != 7:
                assert loop.time() < deadline, "version 7 was never swapped in"
                await asyncio.sleep(0.01)
            resp = await client.post("/recommend", json={"history": [], "k": 1})
            versions.append((await resp.json())["model_version"])
        finally:
            await client.close()
        assert versions == sorted(versions), "a request saw an older snapshot after a newer one"
        assert versions[0] == 1 and versions[-1] == 7
        assert registry.get_sample_value("recoil_serving_snapshot_version") == 7

    asyncio.run(run())
