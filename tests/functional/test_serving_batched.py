"""The batched server on a real snapshot: concurrent requests, each answered as if alone.

A real aiohttp server (``aiohttp.test_utils.TestServer``) over a published snapshot
of an untrained model; 48 concurrent ``POST /recommend`` with different histories,
``k`` and ``exclude_seen`` (plus a rejected one and a ``/recommend/batch``) must come
back as ``Snapshot.recommend`` answers each history alone, in batches of more than
one, with the request metrics counting every request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from learner.snapshot import Snapshot, load_snapshot
from learner.snapshot_publish import publish_snapshot
from learner.synthetic import synthetic_examples
from serving.app import SnapshotHolder, create_app
from serving.batching import BatchConfig, MicroBatcher
from serving.metrics import ServingMetrics
from tests.support.snapshots import untrained_parts

torch.set_num_threads(1)
ARM = "feature_and_labels"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    store: Path = tmp_path_factory.mktemp("store")
    examples = synthetic_examples(num_users=12, events_per_user=30, num_items=150, seed=5)
    model, vocabs, meta = untrained_parts(examples, ARM, dim=16, max_len=10, seed=5)
    publish_snapshot(store, model, vocabs, ARM, meta, 1, {0: 1})
    return load_snapshot(store)


def _body(snapshot: Snapshot, b: int) -> dict[str, Any]:
    items = snapshot.item_ids()
    history = [
        [items[(7 * b + 3 * t) % len(items)], "c", None, t % 5 == 4, 3, 1, 100.0 + t]
        for t in range(b % 17)
    ]
    return {"history": history, "k": 1 + (3 * b) % 25, "exclude_seen": b % 4 != 0}


def _expected(snapshot: Snapshot, body: dict[str, Any]) -> list[tuple[str, float]]:
    from serving.requests import parse_recommend_body

    req = parse_recommend_body(body)
    return snapshot.recommend([req.history], req.k, req.exclude_seen)[0]


def _same(got: list[dict[str, Any]], want: list[tuple[str, float]]) -> None:
    assert [e["item_id"] for e in got] == [i for i, _ in want]
    assert [e["score"] for e in got] == pytest.approx([s for _, s in want], abs=2e-6)


def test_concurrent_requests_are_batched_and_answered_as_alone(snapshot: Snapshot) -> None:
    async def run() -> None:
        registry = CollectorRegistry()
        metrics = ServingMetrics(registry)
        sizes: list[int] = []
        batcher = MicroBatcher(BatchConfig(batch_max_size=32, batch_max_wait_ms=20), sizes.append)
        holder = SnapshotHolder(snapshot)
        app = create_app(holder, None, registry, metrics, batcher=batcher)
        async with TestClient(TestServer(app)) as client:
            bodies = [_body(snapshot, b) for b in range(48)]
            rejected = {**bodies[5], "history": [["nope", "c", None, 0, 3, 1, 1.0]],
                        "unknown_items": "reject"}  # fmt: skip
            many = {"histories": [b["history"] for b in bodies[:6]], "k": 4}

            async def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
                async with client.post(path, json=body) as response:
                    return response.status, await response.json()

            answers = await asyncio.gather(
                *(post("/recommend", body) for body in bodies),
                post("/recommend", rejected),
                post("/recommend/batch", many),
            )
            for body, (status, answer) in zip(bodies, answers, strict=False):
                assert status == 200, answer
                assert answer["model_version"] == snapshot.version
                assert answer["history_length"] == len(body["history"])
                _same(answer["items"], _expected(snapshot, body))
            assert answers[48][0] == 422 and answers[48][1]["error"] == "unknown_items"
            status, batch = answers[49]
            assert status == 200
            for body, got in zip(bodies[:6], batch["results"], strict=True):
                _same(got, _expected(snapshot, {**body, "k": 4, "exclude_seen": True}))
        assert sum(sizes) == 48 + 6 and max(sizes) > 1  # shared forward passes
        ok = registry.get_sample_value(
            "recoil_serving_requests_total", {"endpoint": "/recommend", "status": "200"}
        )
        assert ok == 48

    asyncio.run(run())
