"""A bad snapshot in the store keeps the old one serving, and the watcher lives on.

Real store, real ``load_snapshot``: version 1 is published normally; version 2 is a
corrupt directory renamed into the store (as a damaged disk or a buggy publisher
would leave it); version 3 is published normally afterwards. The server must keep
answering with version 1 once version 2 fails to load (refused once: a published
version never changes, so it is not tried again on every poll), then move to
version 3 — which only happens if the failed load did not end the watcher. Each
refused version counts once in ``recoil_serving_snapshots_refused_total``.

At start (nothing served yet) a bad newest version, or a ``LATEST`` naming a missing
one, falls back to the newest older version that loads, as ``recoil serve`` wires its
watcher (``recoil.commands.serve.watch_store``), trying at most
``serving.app.FALLBACK_VERSIONS`` of the newest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from learner.snapshot import Snapshot, latest_version, load_snapshot
from learner.snapshot_publish import publish_snapshot
from learner.synthetic import synthetic_examples
from recoil.commands.serve import watch_store
from serving.app import FALLBACK_VERSIONS, SnapshotHolder, create_app, watch_snapshots
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
            assert registry.get_sample_value("recoil_serving_snapshots_refused_total") == 1
            assert _publish(store, step=3) == 3
            await _wait(lambda: version_is(3), "the server moves on to the good v3")
            assert registry.get_sample_value("recoil_serving_snapshot_version") == 3
            assert registry.get_sample_value("recoil_serving_snapshots_refused_total") == 1
        finally:
            await client.close()

    asyncio.run(run())
    assert attempts == [(1, "ok"), (2, "SnapshotError"), (3, "ok")]


REFUSED = "recoil_serving_snapshots_refused_total"


def _messages(caplog: pytest.LogCaptureFixture, fragment: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "serving.app" and fragment in r.getMessage()]  # fmt: skip


class _Watched:
    """``recoil serve``'s watcher (``watch_store``) over ``store``, polling every 10 ms, with
    conditions to wait for."""

    def __init__(self) -> None:
        self.holder, self.registry = SnapshotHolder(), CollectorRegistry()

    @contextlib.asynccontextmanager
    async def watching(self, store: Path) -> AsyncIterator[None]:
        metrics = ServingMetrics(self.registry)
        task = asyncio.create_task(watch_store(self.holder, store, metrics, 0.01))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def serves(self, version: int) -> bool:
        return self.holder.snapshot is not None and self.holder.snapshot.version == version

    def refused(self) -> float | None:
        return self.registry.get_sample_value(REFUSED)

    async def has_refused(self, count: int) -> bool:
        return self.refused() == count


def test_at_start_a_bad_newest_version_falls_back_to_the_newest_that_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """v1 and v2 good, v3 corrupt, LATEST naming v5 (not there): v2 is served at once,
    v5 and v3 refused in one line each (and counted), v1 never needed. Once v2 is
    served, nothing changes: the learner's good v6 is served, its bad v7 refused."""
    store = tmp_path / "store"
    assert [_publish(store, step=1), _publish(store, step=2)] == [1, 2]
    _plant_bad_version(store, 3, _corrupt_checksum)
    (store / "LATEST").write_text("5\n")
    watched = _Watched()

    async def scenario() -> None:
        async with watched.watching(store):
            await _wait(lambda: watched.serves(2), "the watcher serves v2")
            assert watched.registry.get_sample_value("recoil_serving_snapshot_version") == 2
            await asyncio.sleep(0.3)  # thirty polls: no refused version is tried again
            assert watched.refused() == 2
            assert _publish(store, step=6) == 6
            await _wait(lambda: watched.serves(6), "the watcher moves on to the good v6")
            _plant_bad_version(store, 7, _truncate_manifest)
            await _wait(lambda: watched.has_refused(3), "the watcher refuses v7")
            await asyncio.sleep(0.3)
            assert await watched.serves(6) and watched.refused() == 3

    with caplog.at_level(logging.INFO, logger="serving.app"):
        asyncio.run(scenario())
    refused = _messages(caplog, "refused snapshot version")
    assert len(refused) == 3, refused
    assert refused[0].startswith("refused snapshot version 5 ("), refused
    assert "v00000005 has no manifest.json" in refused[0], refused
    assert refused[0].endswith("no snapshot is served yet: trying version 3"), refused
    assert refused[1].startswith("refused snapshot version 3 (") and "checksum" in refused[1]
    assert refused[1].endswith("no snapshot is served yet: trying version 2"), refused
    assert refused[2].startswith("refused snapshot version 7 ("), refused
    assert refused[2].endswith("still serving version 6"), refused
    assert _messages(caplog, "serving snapshot version") == [
        "serving snapshot version 2, the newest that loads (version 5 was refused)",
        "serving snapshot version 6",
    ]


def test_the_fallback_tries_only_the_newest_few_versions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """v1 good under FALLBACK_VERSIONS bad ones: those are refused once each and requests
    get 503 (an old model is not dug out from under any number of bad ones) until the
    learner publishes a good version again."""
    store = tmp_path / "store"
    assert _publish(store, step=1) == 1
    bad = list(range(2, 2 + FALLBACK_VERSIONS))
    for version in bad:
        _plant_bad_version(store, version, _corrupt_checksum)
    watched = _Watched()

    async def scenario() -> None:
        async with watched.watching(store):
            await _wait(lambda: watched.has_refused(len(bad)), "the watcher refuses them")
            await asyncio.sleep(0.3)  # thirty polls: none tries v1 or a refused one again
            assert watched.holder.snapshot is None and watched.refused() == len(bad)
            good = _publish(store, step=9)
            await _wait(lambda: watched.serves(good), "the watcher serves the next good one")
            assert watched.refused() == len(bad)

    with caplog.at_level(logging.INFO, logger="serving.app"):
        asyncio.run(scenario())
    refused = _messages(caplog, "refused snapshot version")
    assert [line.split(" (")[0] for line in refused] == [
        f"refused snapshot version {v}" for v in reversed(bad)
    ]
    assert refused[-1].endswith("no snapshot is served yet: requests get 503"), refused


def test_recoil_serve_starts_on_the_newest_version_that_loads(tmp_path: Path) -> None:
    """The real command: v1 good, v2 corrupt. It answers ready with v1, and exports the
    refusal for the alert (RecoilServingSnapshotRefused) to see."""
    store = tmp_path / "store"
    assert _publish(store, step=1) == 1
    _plant_bad_version(store, 2, _corrupt_checksum)
    argv = ["serve", "--store", str(store), "--port", "0", "--history-url", ""]
    proc = subprocess.Popen(
        [sys.executable, "-m", "recoil", *argv], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        printed: list[str] = []
        for line in proc.stdout:  # ends if the command exits; log lines may come first
            printed.append(line)
            if line.startswith("serving on "):
                break
        assert printed and printed[-1].startswith("serving on "), "".join(printed)
        url = printed[-1].split()[2]
        assert _get_when_ready(f"{url}/readyz") == {"status": "ready", "version": 1}
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
            metrics = answer.read().decode()
        assert f"\n{REFUSED} 1.0\n" in metrics, metrics
        assert "\nrecoil_serving_snapshot_version 1.0\n" in metrics, metrics
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _get_when_ready(url: str) -> dict[str, Any]:
    """The JSON ``url`` answers once it stops answering 503 (no snapshot loaded yet)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return dict(json.loads(answer.read()))
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.05)
