"""The live simulation's A/B split: each user is served by its own arm's URL only, and
its served impressions count for that arm (a fake serving API and producer, no network)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from simulator.ab import assign_arm
from simulator.exporter import SimulatorMetrics
from simulator.live import POLICY_ARM, LiveConfig, LiveSimulation

URLS = (("feature_and_labels", "http://fl"), ("no_signal", "http://ns"))
SPLIT = (("feature_and_labels", 0.5), ("no_signal", 0.5))


class FakeResponse:
    def __init__(self, body: dict[str, Any]) -> None:
        self.status = 200
        self.body = json.dumps(body).encode()
        self.content = self  # the simulator reads the body through resp.content.read(n)

    async def __aenter__(self) -> FakeResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self, n: int) -> bytes:
        return self.body[:n]


class FakeSession:
    """GET /recommend/{user}: the first catalogue items, version 3; records every URL."""

    def __init__(self, items: list[str]) -> None:
        self.items = items
        self.urls: list[str] = []

    def get(self, url: str) -> FakeResponse:
        self.urls.append(url)
        return FakeResponse({"items": [{"item_id": i} for i in self.items], "model_version": 3})


class FakeProducer:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent += 1


def _simulation(**overrides: Any) -> tuple[LiveSimulation, CollectorRegistry]:
    settings: dict[str, Any] = {"policy_share": 0.0, **overrides}
    config = LiveConfig(
        serving_url="http://fl", users=30, probe_urls=URLS, split=SPLIT, freshness_seconds=0.0,
        **settings,
    )  # fmt: skip
    registry = CollectorRegistry()
    return LiveSimulation(config, FakeProducer(), "t", SimulatorMetrics(registry)), registry


def _run(sim: LiveSimulation, rounds: int) -> FakeSession:
    """``rounds`` impressions of every user, against a fake serving API (returned)."""
    session = FakeSession(list(sim.world.catalog.item_ids[:10]))

    async def run() -> None:
        for _ in range(rounds):
            for user in sim.users:
                await sim.impression(session, user)  # type: ignore[arg-type]

    asyncio.run(run())
    return session


def _policy_impressions(registry: CollectorRegistry) -> float:
    """Impressions the logging policy chose, by the simulator's counter."""
    return sum(
        registry.get_sample_value(
            "recoil_sim_impressions_total", {"arm": POLICY_ARM, "response": r}
        )
        or 0.0
        for r in ("like", "long_dwell", "short_dwell", "skip", "dislike")
    )


def test_each_user_is_served_by_its_arm_and_counted_there() -> None:
    sim, registry = _simulation()
    session = _run(sim, rounds=4)
    urls = dict(URLS)
    for user in sim.users:
        assert user.arm == assign_arm(user.user_id, SPLIT, "recoil-ab")
        mine = [u for u in session.urls if u.endswith(f"/recommend/{user.user_id}?k=10")]
        assert mine and all(u.startswith(urls[user.arm]) for u in mine)
    assert {u.arm for u in sim.users} == {"feature_and_labels", "no_signal"}
    for arm, tally in sim.arm_tallies.items():
        assert set(tally.users) == {u.user_id for u in sim.users if u.arm == arm}
        assert tally.impressions == 4 * len(tally.users)
    assert sum(t.impressions for t in sim.arm_tallies.values()) == 4 * 30
    summaries = sim.publish_ab()
    assert [s.arm for s in summaries] == ["feature_and_labels", "no_signal"]
    engagement = registry.get_sample_value(
        "recoil_sim_arm_rate_ratio", {"arm": "no_signal", "rate": "engagement"}
    )
    assert engagement == pytest.approx(sim.arm_tallies["no_signal"].rate("engagement"))
    assert _policy_impressions(registry) == 0.0  # policy_share 0: all from the arms' models


def test_the_policys_impressions_are_each_arms_cuped_covariate() -> None:
    sim, registry = _simulation(policy_share=0.5)
    _run(sim, rounds=20)
    from_policy = _policy_impressions(registry)
    tallies = sim.arm_tallies.values()
    policy = sum(c.policy.impressions for t in tallies for c in t.users.values())
    assert 0 < policy == from_policy
    assert sum(t.impressions for t in tallies) + policy == 20 * 30
    for arm, tally in sim.arm_tallies.items():  # each user's covariate sits in its own arm
        assert {u.user_id for u in sim.users if u.arm == arm} == set(tally.users)
    summary = sim.publish_ab()[0]
    adjusted = summary.cuped["engagement"]
    assert math.isfinite(adjusted.theta) and adjusted.ci95[0] <= adjusted.change <= adjusted.ci95[1]
    exported = registry.get_sample_value(
        "recoil_sim_ab_change_cuped_ratio",
        {"arm": "feature_and_labels", "baseline": "no_signal", "rate": "engagement"},
    )
    assert exported == pytest.approx(adjusted.change)


def test_config_refuses_a_split_arm_without_a_url() -> None:
    with pytest.raises(ValueError, match=r"split arms \['feature_only'\] have no probe url"):
        LiveConfig(serving_url="http://fl", probe_urls=URLS, split=(("feature_only", 1.0),))
    with pytest.raises(ValueError, match="add up to 1"):
        LiveConfig(serving_url="http://fl", probe_urls=URLS, split=(("no_signal", 0.5),))
    with pytest.raises(ValueError, match="both arms need a probe url"):
        LiveConfig(serving_url="http://fl", probe_urls=URLS, switch=("no_signal", "x", 1.0))


def test_switch_serves_and_probes_an_arm_from_the_other_model() -> None:
    sim, _ = _simulation(switch=("feature_and_labels", "no_signal", 0.0))
    sim.probed["feature_and_labels"] = 7

    async def switch_then_keep_running() -> None:
        task = asyncio.create_task(sim._switcher())
        await asyncio.sleep(0.05)
        assert not task.done()  # a task that ended would stop the whole simulation
        task.cancel()

    asyncio.run(switch_then_keep_running())
    assert sim.urls["feature_and_labels"] == sim.probe_targets["feature_and_labels"] == "http://ns"
    assert "feature_and_labels" not in sim.probed  # the other model's versions are new here


def test_only_each_arms_newest_probed_version_is_exported() -> None:
    # A Prometheus started after several probes must not see older versions as new ones
    # (it orders versions by first sight); their history is Prometheus', not ours.
    simulation, registry = _simulation()

    def probe(arm: str, version: int, value: float) -> None:
        simulation._export(
            {"arm": arm, "model_version": version, "cluster": value, "creator": value,
             "ci95_cluster": [value - 0.1, value + 0.1],
             "ci95_creator": [value - 0.1, value + 0.1]}
        )  # fmt: skip

    probe("feature_and_labels", 1, -0.5)
    probe("no_signal", 1, 0.0)
    probe("feature_and_labels", 2, -0.3)
    probe("feature_and_labels", 2, -0.25)  # the same version probed again: kept

    def exported(name: str) -> dict[tuple[str, str, str], float]:
        return {
            (s.labels["arm"], s.labels["model_version"], s.labels["similarity"]): s.value
            for m in registry.collect()
            for s in m.samples
            if s.name == name
        }

    for name in ("recoil_responsiveness_ratio", "recoil_responsiveness_ci_lower_ratio",
                 "recoil_responsiveness_ci_upper_ratio"):  # fmt: skip
        series = exported(name)
        assert {(arm, version) for arm, version, _ in series} == {
            ("feature_and_labels", "2"),
            ("no_signal", "1"),
        }, name
    values = exported("recoil_responsiveness_ratio")
    assert values[("feature_and_labels", "2", "creator")] == -0.25
