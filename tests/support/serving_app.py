"""The recommend API served in-process for functional tests: a real aiohttp server on
127.0.0.1 over a deterministic snapshot, with its own metrics registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from serving.app import SnapshotHolder, create_app
from serving.metrics import ServingMetrics
from tests.support.ranked import RankedSnapshot


@asynccontextmanager
async def serving(
    snapshot: RankedSnapshot | None = None, **kwargs: Any
) -> AsyncIterator[tuple[TestClient[Any, Any], CollectorRegistry]]:
    """A client of the app over ``snapshot`` (``RankedSnapshot()`` by default), and the
    app's registry; ``history`` and other ``create_app`` keywords pass through."""
    registry = CollectorRegistry()
    holder = SnapshotHolder(snapshot or RankedSnapshot())
    app = create_app(holder, kwargs.pop("history", None), registry, ServingMetrics(registry),
                     **kwargs)  # fmt: skip
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, registry


def fives(registry: CollectorRegistry) -> float:
    """Requests counted as 500, over every endpoint label."""
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "recoil_serving_requests_total" and sample.labels["status"] == "500"
    )
