"""A serving API that answers badly does not stop the live simulation: a real aiohttp
server on loopback answers 200 with bodies that are no recommendation, and every user
falls back to the logging policy's item, counted under the policy's arm."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from simulator.answers import MAX_ANSWER_BYTES
from simulator.exporter import SimulatorMetrics
from simulator.freshness import example_event_id, snapshot_time
from simulator.http_recommender import ServingError
from simulator.live import POLICY_ARM, LiveConfig, LiveSimulation, served_choice
from simulator.world import World, world_preset

BAD_ANSWERS: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"<html>gateway</html>", "text/html"),
    "JSON not UTF-8": (b'{"items": "\xff"}', "application/json"),
    "a list": (b"[1, 2]", "application/json"),
    "items a string": (b'{"items": "abc", "model_version": 1}', "application/json"),
    "an item not an object": (b'{"items": [5], "model_version": 1}', "application/json"),
    "an unknown item": (b'{"items": [{"item_id": "nope"}], "model_version": 1}',
                        "application/json"),
    "an item id a number": (b'{"items": [{"item_id": 7}], "model_version": 1}',
                            "application/json"),
    "version a string": (b'{"items": [{"item_id": "ITEM"}], "model_version": "v1"}',
                         "application/json"),
    "version missing": (b'{"items": [{"item_id": "ITEM"}]}', "application/json"),
    "over the size bound": (b" " * (MAX_ANSWER_BYTES + 1) + b"{}", "application/json"),
}  # fmt: skip


class FakeProducer:
    """Counts the events the simulation would produce (Kafka is not what is tested)."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent += 1


async def _impressions(body: bytes, content_type: str) -> tuple[LiveSimulation, float, float]:
    """Two impressions of each of 6 users against a server answering ``body`` (ITEM
    replaced by a catalogue item); the simulation and its policy and served counts."""
    config = LiveConfig(serving_url="http://127.0.0.1:1", users=6, policy_share=0.0,
                        freshness_seconds=0.0)  # fmt: skip
    registry = CollectorRegistry()
    sim = LiveSimulation(config, FakeProducer(), "t", SimulatorMetrics(registry))
    answer = body.replace(b"ITEM", sim.world.catalog.item_ids[0].encode())

    async def recommend(request: web.Request) -> web.Response:
        return web.Response(body=answer, content_type=content_type)

    app = web.Application()
    app.router.add_get("/recommend/{user}", recommend)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sim.urls = {arm: f"http://127.0.0.1:{port}" for arm in sim.urls}
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                for user in sim.users:
                    await sim.impression(session, user)
    finally:
        await runner.cleanup()

    def count(arm: str) -> float:
        return sum(
            registry.get_sample_value("recoil_sim_impressions_total",
                                      {"arm": arm, "response": r}) or 0.0
            for r in ("like", "long_dwell", "short_dwell", "skip", "dislike")
        )  # fmt: skip

    served = sum(count(arm) for arm in sim.urls)
    return sim, count(POLICY_ARM), served


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_a_bad_answer_falls_back_to_the_policy(case: str) -> None:
    body, content_type = BAD_ANSWERS[case]
    sim, policy, served = asyncio.run(_impressions(body, content_type))
    assert (policy, served) == (12.0, 0.0)
    assert sim.impressions == 12 and sim.bad_answers == 12


def test_a_good_answer_is_served() -> None:
    """The same server with serving's own answer: every impression is the arm's."""
    good = json.dumps({"items": [{"item_id": "ITEM", "score": 1.0}], "model_version": 4})
    sim, policy, served = asyncio.run(_impressions(good.encode(), "application/json"))
    assert (policy, served) == (0.0, 12.0)
    assert sim.bad_answers == 0


NOT_ANSWERS: list[dict[str, Any]] = [
    {},
    {"items": []},
    {"items": "x", "model_version": 1},
    {"items": [{}], "model_version": 1},
    {"items": [{"item_id": "I0"}], "model_version": True},
    {"items": [{"item_id": "I0"}], "model_version": 1.5},
]


@pytest.mark.parametrize("body", NOT_ANSWERS)
def test_served_choice_takes_only_serving_answers(body: Any) -> None:
    world = World(world_preset("tiny"))
    assert served_choice(body, world.catalog, np.random.default_rng(0)) is None
    good = {"items": [{"item_id": world.catalog.item_ids[3]}], "model_version": 2}
    assert served_choice(good, world.catalog, np.random.default_rng(0)) == (3, 2)


@pytest.mark.parametrize(
    ("body", "created_at"),
    [
        ({"offsets": {"2": 11}, "created_at": 5.0}, 5.0),
        ({"offsets": {"2": 10}, "created_at": 5.0}, None),  # not past offset 10 yet
        ({"offsets": {"1": 99}, "created_at": 5.0}, None),
        ({"offsets": [11], "created_at": 5.0}, None),
        ({"offsets": {"2": "11"}, "created_at": 5.0}, None),
        ({"offsets": {"2": 11}, "created_at": "now"}, None),
        ({"offsets": {"2": 11}}, None),
        (None, None),
    ],
)
def test_snapshot_time_reads_only_serving_answers(
    body: dict[str, Any] | None, created_at: float | None
) -> None:
    """A /snapshot answer of another shape was a KeyError or AttributeError in a task of
    its own: the snapshot-freshness sample died without a word."""
    assert snapshot_time(body, partition=2, offset=10) == created_at


@pytest.mark.parametrize(
    ("value", "event_id"),
    [
        (b'{"event_id": "e1"}', "e1"),
        (b"\xff", None),
        (b"[]", None),
        (None, None),
        (b'{"event_id": 5}', None),
        (b"{}", None),
    ],
)
def test_a_record_that_is_no_example_is_passed_over(
    value: bytes | None, event_id: str | None
) -> None:
    """find_example reads a topic any producer can write: one bad record was a KeyError
    or JSONDecodeError that stopped the search."""
    assert example_event_id(value) == event_id


def test_a_probe_of_a_model_of_another_world_is_a_serving_error() -> None:
    """Items the world's catalogue does not hold were a KeyError that ended the prober's
    task, and with it the simulation; now the prober logs it and tries again."""
    config = LiveConfig(serving_url="http://127.0.0.1:1", users=2, freshness_seconds=0.0,
                        probe_simulations=4, probe_k=2)  # fmt: skip
    sim = LiveSimulation(config, FakeProducer(), "t", SimulatorMetrics(CollectorRegistry()))

    async def batch(request: web.Request) -> web.Response:
        histories = (await request.json())["histories"]
        rows = [[{"item_id": "not-of-this-world", "score": 1.0}] for _ in histories]
        return web.json_response({"model_version": 1, "results": rows})

    async def snapshot(request: web.Request) -> web.Response:
        return web.json_response({"version": 1})

    async def run() -> None:
        app = web.Application()
        app.router.add_post("/recommend/batch", batch)
        app.router.add_get("/snapshot", snapshot)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            with pytest.raises(ServingError, match="is it serving another world's model"):
                await asyncio.to_thread(sim.probe, "feature_and_labels", url)
        finally:
            await runner.cleanup()

    asyncio.run(run())
