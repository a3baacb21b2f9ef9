"""Live simulated users: the closed loop the paper's system lives in, over Kafka and HTTP.

World users (``simulator.world``) ask the serving API for recommendations for
themselves (``GET /recommend/{user_id}``: the model reads their live history
from the stream workers), react through the world's response model, and their
events go to ``interactions``. Like the platform in the paper, retrieval is one
of several sources: a share ``policy_share`` of impressions comes from the
engagement-driven logging policy (``simulator.policy``), which also serves
every impression before the first snapshot exists, so the learner has data to
start from.

A/B test: with ``split`` set, each user is assigned to one arm by a stable hash
of its user id (``simulator.ab``) and only that arm's model serves it, so every
arm's live metrics (dislike rate, repeated dislikes of a creator within
``repeat_window`` impressions, engagement) come from its own users, with
user-resampled intervals and the change against the baseline arm (the last one).
Learners are not part of this: in the loop each learns from all traffic.
``switch`` serves (and probes) one arm's users from another arm's model after a
while: a real regression, made on purpose, for checking the regression alert.

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

from monitoring.catalogue import SIMILARITIES
from recoil.core.checks import check_finite
from recoil.core.labels import LabelConfig
from recoil.core.settings import setting
from simulator.ab import (
    RATES,
    REPEAT_WINDOW,
    REPEAT_WINDOW_HELP,
    ArmSummary,
    ArmTally,
    assign_arm,
    repeat_within,
    summarise,
)
from simulator.answers import json_object
from simulator.catalog import Catalog
from simulator.exporter import SimulatorMetrics
from simulator.freshness import (
    FreshnessSample,
    feature_freshness,
    find_example,
    snapshot_freshness,
)
from simulator.http_recommender import HttpRecommender, ServingError, VersionChangedError
from simulator.logged_data import make_event
from simulator.policy import EngagementPolicy, LoggingPolicyConfig, PolicyMemory
from simulator.probe import ProbeConfig, Responsiveness, run_probe
from simulator.world import SimulatedUserState, World, world_preset

log = logging.getLogger(__name__)

POLICY_ARM = "logging_policy"  # the arm label of impressions the logging policy chose


@dataclass(frozen=True)
class LiveConfig:
    """How the live simulation runs; every default is documented."""

    serving_url: str = setting(
        help="the serving API whose model the users consume", cli_default="http://127.0.0.1:8080"
    )
    arm: str = setting("feature_and_labels", "arm of the served model")  # for metric labels
    # simulator.world.WORLD_PRESETS
    world: str = setting("tiny", "world preset: tiny|small|medium|large")
    seed: int = setting(0, "seeds the world and the users' draws")
    users: int = setting(50, "simulated users u0..u{users-1} (at most the world's users)")
    # over all users
    rate: float = setting(100.0, "impressions/s, 0 = unthrottled")
    concurrency: int = setting(8, "users served at once")
    policy_share: float = setting(0.5, "share of impressions chosen by the logging policy")
    slate_size: int = 10  # recommendations asked for; the user sees one at random
    probe_urls: tuple[tuple[str, str], ...] = ()  # (arm, serving url) probed per version
    probe_simulations: int = setting(200, "counterfactual simulations per probe")
    probe_k: int = setting(20, "the probe branches at the k-th consumed item")
    probe_top_n: int = setting(10, "recommendations compared with the probe's anchor")
    poll_seconds: float = 1.0  # how often to look for new snapshot versions
    freshness_seconds: float = setting(5.0, "freshness sample interval, 0 = off")
    # A/B split: (arm, share) over the arms of probe_urls; users are assigned by a hash
    # of their id. Empty: every user is served by `arm` at `serving_url`.
    split: tuple[tuple[str, float], ...] = ()
    assignment_salt: str = "recoil-ab"  # another salt reshuffles users between arms
    repeat_window: int = setting(REPEAT_WINDOW, REPEAT_WINDOW_HELP)
    ab_seconds: float = 10.0  # per-arm rates and intervals are recomputed this often
    # (arm, other arm, seconds): after that long, `arm` is served and probed from the
    # other arm's model (a deliberate regression); None = never.
    switch: tuple[str, str, float] | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # event id prefix

    def __post_init__(self) -> None:
        if self.users < 1 or self.concurrency < 1 or self.slate_size < 1:
            raise ValueError("users, concurrency and slate_size must be >= 1")
        if not 0.0 <= self.policy_share <= 1.0:
            raise ValueError("policy_share must be in [0, 1]")
        check_finite("rate", self.rate, ">= 0", hint="(0 = as fast as possible)")
        # asyncio.sleep(nan) returns at once: a loop on a NaN interval spins
        check_finite("poll_seconds", self.poll_seconds, "> 0")
        check_finite("freshness_seconds", self.freshness_seconds, ">= 0")
        check_finite("ab_seconds", self.ab_seconds, "> 0")
        if self.switch is not None:
            check_finite("switch time", self.switch[2], ">= 0")
        urls = dict(self.probe_urls)
        missing = [arm for arm, _ in self.split if arm not in urls]
        if missing:
            raise ValueError(f"split arms {missing} have no probe url (ARM=URL)")
        if self.split and abs(sum(share for _, share in self.split) - 1.0) > 1e-9:
            raise ValueError("split shares must add up to 1")
        if self.repeat_window < 1:
            raise ValueError("repeat_window must be >= 1")
        if self.switch is not None and not {self.switch[0], self.switch[1]} <= set(urls):
            raise ValueError(f"switch {self.switch[:2]}: both arms need a probe url")

    @property
    def arms(self) -> tuple[str, ...]:
        """The arms that serve users, in order; the last is the A/B baseline."""
        return tuple(arm for arm, _ in self.split) if self.split else (self.arm,)


@dataclass
class LiveUser:
    """One simulated user's state between impressions."""

    index: int
    state: SimulatedUserState
    memory: PolicyMemory
    rng: np.random.Generator
    arm: str = ""  # the arm whose model serves this user
    step: int = 0
    disliked_creators: set[str] = field(default_factory=set)
    last_dislike: dict[str, int] = field(default_factory=dict)  # creator -> step

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


def served_choice(
    body: dict[str, Any], catalog: Catalog, rng: np.random.Generator
) -> tuple[int, int] | None:
    """(item index, model version) of one item of serving's answer, picked by ``rng``; None
    for an empty answer and for one that is not serving's (another shape, an id the
    catalogue does not hold, a version that is no integer). A server that answers badly
    must not stop the simulation: the user falls back to the logging policy."""
    items, version = body.get("items"), body.get("model_version")
    if not isinstance(items, list) or not items:
        return None
    if isinstance(version, bool) or not isinstance(version, int):
        return None
    chosen = items[int(rng.integers(len(items)))]
    item_id = chosen.get("item_id") if isinstance(chosen, dict) else None
    if not isinstance(item_id, str):
        return None
    try:
        return catalog.index(item_id), version
    except KeyError:
        return None


class LiveSimulation:
    """Users producing events, and a prober measuring each new snapshot version."""

    def __init__(
        self,
        config: LiveConfig,
        producer: Any,  # an started aiokafka AIOKafkaProducer
        topic: str,
        metrics: SimulatorMetrics,
        on_probe: Callable[[dict[str, Any]], None] = lambda result: None,
        on_ab: Callable[[list[ArmSummary]], None] = lambda summaries: None,
        labels: LabelConfig | None = None,
        examples_consumer: Any = None,  # a started aiokafka consumer on training-examples
    ) -> None:
        self.config = config
        self.producer = producer
        self.topic = topic
        self.metrics = metrics
        self.on_probe = on_probe
        self.on_ab = on_ab
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
        self.urls = dict(config.probe_urls) if config.split else {config.arm: config.serving_url}
        for user in self.users:
            user.arm = (
                assign_arm(user.user_id, config.split, config.assignment_salt)
                if config.split
                else config.arm
            )
        self.arm_tallies: dict[str, ArmTally] = {arm: ArmTally() for arm in config.arms}
        self.switched = False
        self.probe_targets = dict(config.probe_urls)  # arm -> url; `switch` changes one
        self.tallies: dict[tuple[str, int], RateTally] = defaultdict(RateTally)
        self.impressions = 0
        self.bad_answers = 0  # serving answers that were no recommendation (policy instead)
        self.probed: dict[str, int] = {}
        self.exported: dict[str, str] = {}  # arm -> the model_version its gauges show
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
        url = f"{self.urls[user.arm]}/recommend/{user.user_id}?k={self.config.slate_size}"
        try:
            async with session.get(url) as resp:
                if resp.status != 200:
                    return None  # no snapshot yet (503) or the history service is down
                body, problem = await json_object(resp)
        except (aiohttp.ClientError, TimeoutError):
            return None
        if body is None:
            self._bad_answer(url, problem)
            return None
        served = served_choice(body, self.world.catalog, user.rng)
        if served is None and body.get("items") != []:
            self._bad_answer(url, f"not a recommendation: {str(body)[:200]}")
        return served

    def _bad_answer(self, url: str, what: str) -> None:
        """A serving answer the simulation cannot use: the user gets the policy's item, and
        the first and every 1,000th are logged (a bad server must not flood the log)."""
        self.bad_answers += 1
        if self.bad_answers % 1000 == 1:
            log.warning("GET %s answered 200, %s; the logging policy chose instead (%d such "
                        "answers so far)", url, what, self.bad_answers)  # fmt: skip

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
        arm = user.arm if served else POLICY_ARM
        kind = response_kind(response.dwell_ratio, response.liked, response.disliked)
        self.metrics.impressions.labels(arm=arm, response=kind).inc()
        step = user.step - 1
        repeat = response.disliked and repeat_within(
            user.last_dislike, event.creator_id, step, self.config.repeat_window
        )
        if response.disliked:
            user.disliked_creators.add(event.creator_id)
            user.last_dislike[event.creator_id] = step
        positive = not response.disliked and (
            response.liked or response.dwell_ratio >= self.labels.long_dwell_ratio
        )
        # the policy's impressions count too, as the CUPED covariate of the user's arm
        self.arm_tallies[user.arm].record(
            user.user_id, response.disliked, repeat, positive, by_policy=not served
        )
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
        recommender = HttpRecommender(url, pinned=True)
        cfg = self.config
        probe_config = ProbeConfig(
            simulations=cfg.probe_simulations, k=cfg.probe_k, top_n=cfg.probe_top_n,
            choose_from=cfg.probe_top_n, bootstrap=500, batch_size=256, seed=cfg.seed,
        )  # fmt: skip
        result: Responsiveness | None = None
        with contextlib.suppress(VersionChangedError):  # stopped at another version's answer
            try:
                result = run_probe(recommender, self.world.catalog, probe_config, self.labels)
            except KeyError as exc:  # the prober logs it and tries again; the users go on
                raise ServingError(
                    f"probing {url}: {exc.args[0] if exc.args else exc}; is it serving "
                    "another world's model?"
                ) from None
        if result is None or len(recommender.versions) != 1:
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
        """Each arm's newest probed version only: its series replace the previous
        version's. Prometheus orders versions by when it first saw them (model_version is a
        label), so a Prometheus started after several probes would otherwise see them all
        at once, tied, and take the largest value as the newest (docs/live_experiment.md);
        the history of older versions is in Prometheus, not in this process."""
        arm, version = result["arm"], str(result["model_version"])
        previous = self.exported.get(arm)
        if previous is not None and previous != version:
            self.metrics.drop_version(arm, previous)
        self.exported[arm] = version
        labels = {"arm": arm, "model_version": version}
        for similarity in SIMILARITIES:
            low, high = result[f"ci95_{similarity}"]
            self.metrics.responsiveness.labels(similarity=similarity, **labels).set(
                result[similarity]
            )
            self.metrics.ci_lower.labels(similarity=similarity, **labels).set(low)
            self.metrics.ci_upper.labels(similarity=similarity, **labels).set(high)

    def ab_summary(self) -> list[ArmSummary]:
        """Every serving arm's live rates with intervals, and changes against the baseline."""
        arms = self.config.arms
        return summarise(self.arm_tallies, baseline=arms[-1], seed=self.config.seed)

    def _export_ab(self, summaries: list[ArmSummary]) -> None:
        """Finite values only: a NaN gauge would read as data that is not there."""
        m = self.metrics
        baseline = self.config.arms[-1]
        for summary in summaries:
            for rate in RATES:
                value, (low, high) = summary.rates[rate]
                for gauge, number in ((m.arm_rate, value), (m.arm_rate_lower, low),
                                      (m.arm_rate_upper, high)):  # fmt: skip
                    if np.isfinite(number):
                        gauge.labels(arm=summary.arm, rate=rate).set(number)
                if rate not in summary.changes:
                    continue
                change, (low, high) = summary.changes[rate]
                cuped = summary.cuped[rate]
                labels = {"arm": summary.arm, "baseline": baseline, "rate": rate}
                for gauge, number in ((m.ab_change, change), (m.ab_change_lower, low),
                                      (m.ab_change_upper, high), (m.ab_cuped, cuped.change),
                                      (m.ab_cuped_lower, cuped.ci95[0]),
                                      (m.ab_cuped_upper, cuped.ci95[1])):  # fmt: skip
                    if np.isfinite(number):
                        gauge.labels(**labels).set(number)

    def publish_ab(self) -> list[ArmSummary]:
        summaries = self.ab_summary()
        self._export_ab(summaries)
        self.on_ab(summaries)
        return summaries

    async def _ab_reporter(self) -> None:
        while True:
            await asyncio.sleep(self.config.ab_seconds)
            await asyncio.to_thread(self.publish_ab)

    async def _switcher(self) -> None:
        """After ``switch[2]`` seconds, serve and probe arm A from arm B's model."""
        assert self.config.switch is not None
        arm, other, after = self.config.switch
        await asyncio.sleep(after)
        self.urls[arm] = dict(self.config.probe_urls)[other]
        self.probe_targets[arm] = self.urls[arm]
        self.probed.pop(arm, None)  # the other model's versions count as new
        self.switched = True
        log.warning("switch: arm %s is now served by %s's model", arm, other)
        await asyncio.Event().wait()  # like the other tasks, run until cancelled: run()
        # stops everything as soon as any task ends

    async def _prober(self) -> None:
        recommenders: dict[str, HttpRecommender] = {}
        last_probed: dict[str, float] = {}  # arm -> when its last kept probe ended
        while True:
            # The arm probed least recently goes first: when probes outlast a snapshot
            # interval (a busy machine) and are discarded, a fixed order let one arm
            # starve the other at every interval.
            order = sorted(self.probe_targets.items(), key=lambda t: last_probed.get(t[0], 0.0))
            for arm, url in order:
                try:
                    if recommenders.get(arm) is None or recommenders[arm].base_url != url:
                        recommenders[arm] = HttpRecommender(url)
                    version = await asyncio.to_thread(recommenders[arm].snapshot_version)
                    if version is None or version <= self.probed.get(arm, 0):
                        continue
                    result = await asyncio.to_thread(self.probe, arm, url)
                except ServingError as exc:
                    log.warning("probing %s at %s failed: %s", arm, url, exc)
                    continue
                if result is not None:
                    last_probed[arm] = time.monotonic()
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
        try:
            seconds = await snapshot_freshness(
                session, self.config.serving_url, sample.produced_at, found[sample.event_id]
            )
        except (TimeoutError, aiohttp.ClientError) as exc:  # a task of its own: say why
            log.warning("snapshot freshness of %s failed: %r", sample.event_id, exc)
            return
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
            if self.config.ab_seconds > 0:
                tasks.append(asyncio.create_task(self._ab_reporter()))
            if self.config.switch is not None:
                tasks.append(asyncio.create_task(self._switcher()))
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
        self.publish_ab()  # the final figures
