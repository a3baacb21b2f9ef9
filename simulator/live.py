"""Live simulated users: the closed loop the paper's system lives in, over Kafka and HTTP.

World users (``simulator.world``) ask the serving API for recommendations for
themselves (``GET /recommend/{user_id}``: the model reads their live history
from the stream workers), react through the world's response model, and their
events go to ``interactions``. Like the platform in the paper, retrieval is one
of several sources: a share ``policy_share`` of impressions comes from the
engagement-driven logging policy (``simulator.policy``), which also serves
every impression before the first snapshot exists, so the learner has data to
start from.

Every new snapshot version of each probed model is measured with the
counterfactual responsiveness probe (``simulator.probe``) through
``POST /recommend/batch``; a probe during which the served version changed is
discarded and repeated. Results go to Prometheus (labelled by model version and
arm) and to a callback (the demo prints them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from recoil.labels import LabelConfig
from simulator.exporter import SimulatorMetrics
from simulator.freshness import (
    FreshnessSample,
    feature_freshness,
    find_example,
    snapshot_freshness,
)
from simulator.http_recommender import HttpRecommender, ServingError
from simulator.logged_data import make_event
from simulator.policy import EngagementPolicy, LoggingPolicyConfig, PolicyMemory
from simulator.probe import ProbeConfig, run_probe
from simulator.world import UserState, World, world_preset

log = logging.getLogger(__name__)

POLICY_ARM = "logging_policy"  # the arm label of impressions the logging policy chose


@dataclass(frozen=True)
class LiveConfig:
    """How the live simulation runs; every default is documented."""

    serving_url: str  # the serving API whose model the users consume
    arm: str = "feature_and_labels"  # the served model's arm, for metric labels
    world: str = "tiny"  # world preset (simulator.world.WORLD_PRESETS)
    seed: int = 0  # world and user draws
    users: int = 50  # simulated users u0..u{users-1} (at most the world's users)
    rate: float = 100.0  # impressions per second over all users; 0 = as fast as possible
    concurrency: int = 8  # users served at once
    policy_share: float = 0.5  # share of impressions chosen by the logging policy
    slate_size: int = 10  # recommendations asked for; the user sees one at random
    probe_urls: tuple[tuple[str, str], ...] = ()  # (arm, serving url) probed per version
    probe_simulations: int = 200  # counterfactual simulations per probe
    probe_k: int = 20  # the branch happens at the k-th consumed item
    probe_top_n: int = 10  # recommendations compared with the anchor
    poll_seconds: float = 1.0  # how often to look for new snapshot versions
    freshness_seconds: float = 5.0  # one freshness measurement this often; 0 = none
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # event id prefix

    def __post_init__(self) -> None:
        if self.users < 1 or self.concurrency < 1 or self.slate_size < 1:
            raise ValueError("users, concurrency and slate_size must be >= 1")
        if not 0.0 <= self.policy_share <= 1.0:
            raise ValueError("policy_share must be in [0, 1]")
        if self.rate < 0:
            raise ValueError("rate must be >= 0 (0 = as fast as possible)")


@dataclass
class LiveUser:
    """One simulated user's state between impressions."""

    index: int
    state: UserState
    memory: PolicyMemory
    rng: np.random.Generator
    step: int = 0
    disliked_creators: set[str] = field(default_factory=set)

    @property
    def user_id(self) -> str:
        return f"u{self.index}"


def response_kind(dwell_ratio: float, liked: bool, disliked: bool) -> str:
    """The ``response`` label of an impression (dislike beats like beats dwell)."""
    if disliked:
        return "dislike"
    if liked:
        return "like"
    if dwell_ratio < 0.1:
        return "skip"
    return "long_dwell" if dwell_ratio >= 0.8 else "short_dwell"


@dataclass
class RateTally:
    impressions: int = 0
    dislikes: int = 0
    repeats: int = 0


class LiveSimulation:
    """Users producing events, and a prober measuring each new snapshot version."""

    def __init__(
        self,
        config: LiveConfig,
        producer: Any,  # an started aiokafka AIOKafkaProducer
        topic: str,
        metrics: SimulatorMetrics,
        on_probe: Callable[[dict[str, Any]], None] = lambda result: None,
        labels: LabelConfig | None = None,
        examples_consumer: Any = None,  # a started aiokafka consumer on training-examples
    ) -> None:
        self.config = config
        self.producer = producer
        self.topic = topic
        self.metrics = metrics
        self.on_probe = on_probe
        self.labels = labels or LabelConfig()
        self.examples_consumer = examples_consumer
        self.freshness: list[dict[str, float]] = []
        self.world = World(world_preset(config.world, config.seed))
        if config.users > self.world.config.num_users:
            raise ValueError(
                f"--users {config.users}: world {config.world!r} has "
                f"{self.world.config.num_users} users"
            )
        self.policy = EngagementPolicy(
            self.world.item_creator, self.world.item_cluster, LoggingPolicyConfig()
        )
        self.users = [
            LiveUser(u, self.world.initial_state(u), PolicyMemory(),
                     np.random.default_rng([config.seed, 7, u]))
            for u in range(config.users)
        ]  # fmt: skip
        self.tallies: dict[tuple[str, int], RateTally] = defaultdict(RateTally)
        self.impressions = 0
        self.probed: dict[str, int] = {}
        self._next_slot = 0.0

    async def _throttle(self) -> None:
        if self.config.rate <= 0:
            return
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1.0 / self.config.rate
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _recommended(
        self, session: aiohttp.ClientSession, user: LiveUser
    ) -> tuple[int, int] | None:
        """(item index, model version) from the serving API, or None to fall back."""
        url = f"{self.config.serving_url}/recommend/{user.user_id}?k={self.config.slate_size}"
        try:
            async with session.get(url) as resp:
                if resp.status != 200:
                    return None  # no snapshot yet (503) or the history service is down
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError):
            return None
        items = body["items"]
        if not items:
            return None
        chosen = items[int(user.rng.integers(len(items)))]["item_id"]
        return self.world.catalog.index(chosen), int(body["model_version"])

    def _policy_item(self, user: LiveUser) -> int:
        try:
            return self.policy.choose(user.memory, user.rng)
        except ValueError:  # the user has seen every item: let them see items again
            user.memory.seen.clear()
            return self.policy.choose(user.memory, user.rng)

    async def impression(self, session: aiohttp.ClientSession, user: LiveUser) -> None:
        """One impression: choose, respond, produce the event, update state and metrics."""
        served: tuple[int, int] | None = None
        if user.rng.random() >= self.config.policy_share:
            served = await self._recommended(session, user)
        item = served[0] if served else self._policy_item(user)
        response = self.world.next_response(user.state, item, user.rng)
        event = make_event(self.world, user.index, user.step, item, response, time.time())
        event = dataclasses.replace(event, event_id=f"{self.config.run_id}-{event.event_id}")
        await self.producer.send(self.topic, key=event.user_id.encode(), value=event.to_json())
        user.state = self.world.next_state(user.state, response, item)
        self.policy.observe(user.memory, item, response.dwell_ratio, response.liked)
        user.step += 1
        self.impressions += 1
        arm = self.config.arm if served else POLICY_ARM
        kind = response_kind(response.dwell_ratio, response.liked, response.disliked)
        self.metrics.impressions.labels(arm=arm, response=kind).inc()
        repeat = response.disliked and event.creator_id in user.disliked_creators
        if response.disliked:
            user.disliked_creators.add(event.creator_id)
        if served:
            tally = self.tallies[(arm, served[1])]
            tally.impressions += 1
            tally.dislikes += response.disliked
            tally.repeats += repeat
            labels = {"arm": arm, "model_version": str(served[1])}
            self.metrics.dislike_rate.labels(**labels).set(tally.dislikes / tally.impressions)
            self.metrics.repeat_dislike_rate.labels(**labels).set(tally.repeats / tally.impressions)

    async def _user_worker(
        self, session: aiohttp.ClientSession, queue: asyncio.Queue[LiveUser]
    ) -> None:
        while True:
            user = await queue.get()
            await self._throttle()
            try:
                await self.impression(session, user)
            finally:
                queue.put_nowait(user)

    def probe(self, arm: str, url: str) -> dict[str, Any] | None:
        """Probe the model behind ``url`` once; None if its version changed meanwhile."""
        recommender = HttpRecommender(url)
        cfg = self.config
        probe_config = ProbeConfig(
            simulations=cfg.probe_simulations, k=cfg.probe_k, top_n=cfg.probe_top_n,
            choose_from=cfg.probe_top_n, bootstrap=500, batch_size=256, seed=cfg.seed,
        )  # fmt: skip
        result = run_probe(recommender, self.world.catalog, probe_config, self.labels)
        if len(recommender.versions) != 1:
            log.info("%s: snapshot changed during the probe (%s); probing again", arm,
                     sorted(recommender.versions))  # fmt: skip
            return None
        version = recommender.versions.pop()
        tally = self.tallies.get((arm, version), RateTally())
        return {
            "arm": arm,
            "model_version": version,
            **result.to_dict(),
            "impressions": tally.impressions,
            "dislike_rate": tally.dislikes / tally.impressions if tally.impressions else None,
            "repeat_dislike_creator_rate": (
                tally.repeats / tally.impressions if tally.impressions else None
            ),
            "probed_at": time.time(),
        }

    def _export(self, result: dict[str, Any]) -> None:
        labels = {"arm": result["arm"], "model_version": str(result["model_version"])}
        for similarity in ("cluster", "creator"):
            low, high = result[f"ci95_{similarity}"]
            self.metrics.responsiveness.labels(similarity=similarity, **labels).set(
                result[similarity]
            )
            self.metrics.ci_lower.labels(similarity=similarity, **labels).set(low)
            self.metrics.ci_upper.labels(similarity=similarity, **labels).set(high)

    async def _prober(self) -> None:
        recommenders = {arm: HttpRecommender(url) for arm, url in self.config.probe_urls}
        while True:
            for arm, url in self.config.probe_urls:
                try:
                    version = await asyncio.to_thread(recommenders[arm].snapshot_version)
                    if version is None or version <= self.probed.get(arm, 0):
                        continue
                    result = await asyncio.to_thread(self.probe, arm, url)
                except ServingError as exc:
                    log.warning("probing %s at %s failed: %s", arm, url, exc)
                    continue
                if result is not None:
                    self.probed[arm] = result["model_version"]
                    self._export(result)
                    self.on_probe(result)
            await asyncio.sleep(self.config.poll_seconds)

    async def _snapshot_freshness(
        self, session: aiohttp.ClientSession, sample: FreshnessSample
    ) -> None:
        found = await find_example(self.examples_consumer, {sample.event_id}, timeout=60.0)
        if sample.event_id not in found:
            log.warning("the example of %s never appeared on the topic", sample.event_id)
            return
        partition, offset = found[sample.event_id]
        seconds = await snapshot_freshness(
            session, self.config.serving_url, sample.produced_at, partition, offset
        )
        self.metrics.freshness_snapshot.observe(seconds)
        self.freshness.append({"snapshot_seconds": seconds})

    async def _freshness(self, session: aiohttp.ClientSession) -> None:
        """Every ``freshness_seconds``: one feature-freshness sample, then its snapshot."""
        catalog = self.world.catalog
        rng = np.random.default_rng([self.config.seed, 11])
        lock = asyncio.Lock()  # one find_example at a time on the shared consumer
        pending: set[asyncio.Task[None]] = set()

        async def snapshot_part(sample: FreshnessSample) -> None:
            async with lock:
                await self._snapshot_freshness(session, sample)

        while True:
            await asyncio.sleep(self.config.freshness_seconds)
            j = int(rng.integers(len(catalog)))
            item = (catalog.item_ids[j], catalog.creator_ids[j], catalog.cluster_ids[j])
            try:
                sample = await feature_freshness(
                    session, self.producer, self.topic, self.config.serving_url, item
                )
            except (TimeoutError, aiohttp.ClientError) as exc:
                log.warning("feature freshness sample failed: %r", exc)
                continue
            self.metrics.freshness_feature.observe(sample.feature_seconds)
            self.freshness.append({"feature_seconds": sample.feature_seconds})
            if self.examples_consumer is not None and len(pending) < 3:
                task = asyncio.create_task(snapshot_part(sample))
                pending.add(task)
                task.add_done_callback(pending.discard)

    async def run(self, stop: asyncio.Event) -> None:
        """Run users and the prober until ``stop`` is set."""
        timeout = aiohttp.ClientTimeout(total=5.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            queue: asyncio.Queue[LiveUser] = asyncio.Queue()
            for user in self.users:
                queue.put_nowait(user)
            tasks = [
                asyncio.create_task(self._user_worker(session, queue))
                for _ in range(min(self.config.concurrency, len(self.users)))
            ]
            if self.config.probe_urls:
                tasks.append(asyncio.create_task(self._prober()))
            if self.config.freshness_seconds > 0:
                tasks.append(asyncio.create_task(self._freshness(session)))
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
            for task in [*tasks, waiter]:
                task.cancel()
            for task in [*tasks, waiter]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for task in done:
                if task is not waiter and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
