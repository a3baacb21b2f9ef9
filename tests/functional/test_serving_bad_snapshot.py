"""A bad snapshot in the store keeps the old one serving, and the watcher lives on.

Real store, real ``load_snapshot``: version 1 is published normally; version 2 is a
corrupt directory renamed into the store (as a damaged disk or a buggy publisher
would leave it); version 3 is published normally afterwards. The server must keep
answering with version 1 once version 2 fails to load (refused once: a published
version never changes, so it is not tried again on every poll), then move to
version 3 — which only happens if the failed load did not end the watcher.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from learner.snapshot import Snapshot, latest_version, load_snapshot
from learner.snapshot_publish import publish_snapshot
from learner.synthetic import synthetic_examples
from serving.app import SnapshotHolder, create_app, watch_snapshots
from serving.metrics import ServingMetrics
from tests.support.snapshots import untrained_parts

torch.set_num_threads(1)

ARM = "feature_and_labels"
WAIT_SECONDS = 60.0  # generous for a loaded 2-core machine; a pass takes well under 1 s


def _publish(store: Path, step: int) -> int:
    examples = synthetic_examples(num_users=6, events_per_user=20, num_items=40, seed=0)
    model, vocabs, meta = untrained_parts(examples, ARM, dim=8, max_len=8, seed=step)
    return publish_snapshot(store, model, vocabs, ARM, meta, step, {0: step}).version


def _corrupt_checksum(directory: Path) -> None:
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte: the manifest's sha256 no longer matches
    weights.write_bytes(bytes(data))


def _truncate_manifest(directory: Path) -> None:
    manifest = directory / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])  # not JSON any more


def _plant_bad_version(store: Path, version: int, damage: Callable[[Path], None]) -> None:
    """A copy of v1 renamed in as ``version`` after being damaged (never seen half-done)."""
    staging = store / ".tmp-bad"
    shutil.copytree(store / "v00000001", staging)
    manifest = staging / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": version}))
    damage(staging)
    os.rename(staging, store / f"v{version:08d}")
    (store / "LATEST").write_text(f"{version}\n")


async def _wait(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS:.0f}s: {what}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("damage", [_corrupt_checksum, _truncate_manifest])
def test_bad_snapshot_keeps_the_old_one_and_a_later_good_one_is_served(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    store = tmp_path / "store"
    assert _publish(store, step=1) == 1
    attempts: list[tuple[int, str]] = []

    def load(version: int) -> Snapshot:
        try:
            snapshot = load_snapshot(store, version)
        except Exception as exc:
            attempts.append((version, type(exc).__name__))
            raise
        attempts.append((version, "ok"))
        return snapshot

    async def run() -> None:
        holder = SnapshotHolder()
        registry = CollectorRegistry()
        metrics = ServingMetrics(registry)

        def watcher() -> Any:
            return watch_snapshots(holder, lambda: latest_version(store), load, metrics, 0.01)

        app = create_app(holder, None, registry, metrics, background=[watcher])
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()

        async def served_version() -> int | None:
            resp = await client.post("/recommend", json={"history": [], "k": 3})
            if resp.status == 503:
                return None
            assert resp.status == 200
            body = await resp.json()
            assert len(body["items"]) == 3
            return int(body["model_version"])

        async def version_is(expected: int) -> bool:
            return await served_version() == expected

        async def refused() -> bool:
            return any(v == 2 for v, _ in attempts)

        try:
            await _wait(lambda: version_is(1), "the server loads v1")
            _plant_bad_version(store, 2, damage)
            await _wait(refused, "the watcher tries the bad v2")
            await asyncio.sleep(0.3)  # thirty polls, none of which tries v2 again
            assert await served_version() == 1
            assert (await (await client.get("/snapshot")).json())["version"] == 1
            assert (await (await client.get("/readyz")).json())["version"] == 1
            assert registry.get_sample_value("recoil_serving_snapshot_version") == 1
            assert _publish(store, step=3) == 3
            await _wait(lambda: version_is(3), "the server moves on to the good v3")
            assert registry.get_sample_value("recoil_serving_snapshot_version") == 3
        finally:
            await client.close()

    asyncio.run(run())
    assert attempts == [(1, "ok"), (2, "SnapshotError"), (3, "ok")]
