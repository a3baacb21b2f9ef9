"""The whole loop as child processes: stream worker, learners, serving, simulated users.

Used by ``recoil demo`` and by the loop's integration test, so what the test
checks is what users run. One learner and one serving process per arm. The
simulated users are split between the arms (an A/B test: a stable hash of the
user id picks the arm, ``split`` sets the shares) and each arm's model serves
only its own users; every arm is probed at each new snapshot version.

Training data: every learner reads the whole ``training-examples`` topic (each
in its own consumer group), i.e. all arms' traffic, not only its own arm's. The
arms then differ only in how they learn (the paper's comparison: the loss and
the dislike feature), not in what they learn from; with a few dozen simulated
users, one arm's traffic alone would also starve each learner. The cost is that
an arm's model learns partly from what the other arm served. Per-arm training
(as in production A/B tests, where the treatment's data is its own) would need
the arm on every event and example and a filter in the learner: not done.
"""

from __future__ import annotations

import json
import math
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recoil.broker.embedded import free_port
from recoil.core.checks import MAX_SEED, check_finite
from recoil.core.errors import ConfigError
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import Child, ProcessGroup, recoil_command
from recoil.core.settings import setting, to_flags
from recoil.core.topics import DLQ, INTERACTIONS, MODEL_UPDATES, TRAINING_EXAMPLES, ensure_topics
from simulator.ab import REPEAT_WINDOW, REPEAT_WINDOW_HELP
from streams.config import StreamsConfig
from streams.supervisor import worker_command


@dataclass(frozen=True)
class LoopConfig:
    """What the loop runs; defaults make a small demo on one laptop."""

    # snapshots, checkpoints, worker state, logs, probe results; recoil demo makes one
    workdir: Path = setting(help="default: a new directory", cli_default=None)
    arms: tuple[str, ...] = setting(
        ("feature_and_labels", "no_signal"),
        "comma-separated arms (learner/arms.py); the last is the A/B baseline",
    )
    world: str = setting("tiny", "simulator world preset")
    users: int = setting(50, "simulated users (the tiny world has 60)")
    rate: float = setting(150.0, "impressions per second")
    snapshot_every_steps: int = 150  # learner publishes after this many steps...
    # ...or this many seconds, whichever first
    snapshot_every_seconds: float = setting(
        20.0, "seconds between a learner's snapshots (sooner after 150 steps)"
    )
    split: str = setting("", "users per arm ('' = equal shares)", metavar="ARM=SHARE,...")
    repeat_window: int = setting(REPEAT_WINDOW, REPEAT_WINDOW_HELP)
    # after SECONDS of the simulator's run (recoil demo shifts it by its warm-up)
    switch: str = setting(
        "",
        "after SECONDS serve ARM's users (and probes) from OTHER's model: a deliberate "
        "regression, to check the RecoilResponsivenessRegressed alert",
        metavar="ARM=OTHER@SECONDS",
    )
    policy_share: float = 0.5  # share of impressions from the logging policy
    partitions: int = 4  # of interactions and training-examples
    topic_suffix: str = ""  # tests give each run its own topics
    batch_size: int = 128  # examples per training step
    probe_simulations: int = 200  # counterfactual simulations per probe
    probe_k: int = 20  # branch position of the probe
    seed: int = setting(0, "seeds the world, the simulated users and the learners")

    def __post_init__(self) -> None:
        from learner.arms import ARMS
        from simulator.ab import parse_split

        unknown = [arm for arm in self.arms if arm not in ARMS]
        if not self.arms or unknown:
            raise ConfigError(f"arms={','.join(self.arms)!r}: choose from {sorted(ARMS)}")
        if len(set(self.arms)) < len(self.arms):  # one learner and one server per arm
            raise ConfigError(f"arms={','.join(self.arms)!r}: name each arm once")
        try:
            parse_split(self.split, self.arms)
        except ValueError as exc:
            raise ConfigError(f"split={self.split!r}: {exc}") from None
        self._check_children_settings()

    def _check_children_settings(self) -> None:
        """The settings the loop hands to its children, checked before any starts: the
        learners' and the simulator's configs would refuse them only once the broker,
        the worker and the first learners are up (a traceback, or a child that dies)."""
        from simulator.world import WORLD_PRESETS

        if self.world not in WORLD_PRESETS:
            raise ConfigError(f"world={self.world!r}: choose one of {sorted(WORLD_PRESETS)}")
        world_users = WORLD_PRESETS[self.world].num_users
        if not 1 <= self.users <= world_users:
            raise ConfigError(
                f"users={self.users}: must be in 1..{world_users} (the {self.world} world's users)"
            )
        check_finite("rate", self.rate, ">= 0", hint="(0 = as fast as possible)")
        check_finite("snapshot_every_seconds", self.snapshot_every_seconds, "> 0")
        if self.repeat_window < 1:
            raise ConfigError(f"repeat_window={self.repeat_window}: must be >= 1")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed={self.seed}: must be in 0..{MAX_SEED}")
        if self.switch:  # ARM=OTHER@SECONDS, as the simulator's LiveConfig takes it
            pair, _, seconds = self.switch.rpartition("@")
            arm, _, other = pair.partition("=")
            try:
                after = float(seconds)
            except ValueError:
                after = math.nan
            if not {arm, other} <= set(self.arms) or not 0 <= after < math.inf:
                raise ConfigError(
                    f"switch={self.switch!r}: give ARM=OTHER@SECONDS with ARM and OTHER among "
                    f"the arms ({','.join(self.arms)}) and SECONDS finite and >= 0"
                )

    def topic(self, name: str) -> str:
        return name + self.topic_suffix

    @property
    def results_file(self) -> Path:
        """Probe results, one JSON line per (arm, model version)."""
        return self.workdir / "probes.jsonl"

    @property
    def ab_file(self) -> Path:
        """The latest per-arm A/B summary (simulator.ab.ArmSummary.to_dict, as a list)."""
        return self.workdir / "ab.json"


def read_ab_summary(path: Path) -> list[dict[str, Any]]:
    """The simulator's latest per-arm A/B summary, or [] before the first one."""
    try:
        return list(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def read_probe_results(path: Path) -> list[dict[str, Any]]:
    """Every probe result so far, in the order they were measured."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Ports:
    worker_web: int
    worker_metrics: int
    simulator_metrics: int
    serving: dict[str, int]
    learner_metrics: dict[str, int]


class Loop:
    """Start the roles in dependency order; the caller's ProcessGroup stops them."""

    def __init__(self, config: LoopConfig, kafka: KafkaSettings, group: ProcessGroup) -> None:
        self.config = config
        self.kafka = kafka
        self.group = group
        self.ports = Ports(
            worker_web=free_port(),
            worker_metrics=free_port(),
            simulator_metrics=free_port(),
            serving={arm: free_port() for arm in config.arms},
            learner_metrics={arm: free_port() for arm in config.arms},
        )
        self.children: dict[str, Child] = {}

    def store(self, arm: str) -> Path:
        return self.config.workdir / "snapshots" / arm

    def serving_url(self, arm: str) -> str:
        return f"http://127.0.0.1:{self.ports.serving[arm]}"

    def metrics_targets(self) -> list[str]:
        """host:port of every /metrics endpoint the loop exposes."""
        ports = [self.ports.worker_metrics, self.ports.simulator_metrics]
        ports += list(self.ports.learner_metrics.values()) + list(self.ports.serving.values())
        return [f"127.0.0.1:{p}" for p in ports]

    def start(self) -> None:
        cfg = self.config
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        ensure_topics(
            self.kafka,
            [cfg.topic(INTERACTIONS), cfg.topic(TRAINING_EXAMPLES)],
            partitions=cfg.partitions,
        )
        ensure_topics(self.kafka, [cfg.topic(DLQ), cfg.topic(MODEL_UPDATES)], partitions=1)
        worker = StreamsConfig(
            app_id=f"recoil-streams{cfg.topic_suffix}",
            input_topic=cfg.topic(INTERACTIONS),
            output_topic=cfg.topic(TRAINING_EXAMPLES),
            dlq_topic=cfg.topic(DLQ),
            data_dir=cfg.workdir / "worker",
            web_port=self.ports.worker_web,
            metrics_port=self.ports.worker_metrics,
        )
        self.children["worker"] = self.group.start(
            "worker", worker_command(self.kafka, worker), env=self.kafka.env()
        )
        for arm in cfg.arms:
            self.children[f"learner-{arm}"] = self.group.start(
                f"learner-{arm}", self.learner_command(arm), env=self.kafka.env()
            )
            history = f"http://127.0.0.1:{self.ports.worker_web}"
            serve = ["serve", f"--store={self.store(arm)}", f"--history-url={history}"]
            self.children[f"serving-{arm}"] = self.group.start(
                f"serving-{arm}", recoil_command(*serve, f"--port={self.ports.serving[arm]}")
            )
        self.children["simulator"] = self.group.start(
            "simulator", self.simulator_command(), env=self.kafka.env()
        )

    @property
    def bootstrap(self) -> list[str]:
        return ["--bootstrap-servers", self.kafka.bootstrap_servers]

    def learner_command(self, arm: str) -> list[str]:
        """The argv of ``recoil learn`` for ``arm``: every setting from its config class."""
        # learner's config modules import torch: only here, not when recoil.loop loads
        from learner.continuous import LearnerConfig
        from learner.kafka_source import SourceConfig
        from recoil.commands.learn import LearnOptions

        cfg = self.config
        learner = LearnerConfig(
            store=self.store(arm),
            checkpoint_dir=cfg.workdir / "checkpoints" / arm,
            arm=arm,
            seed=cfg.seed,
            snapshot_every_steps=cfg.snapshot_every_steps,
            snapshot_every_seconds=cfg.snapshot_every_seconds,
            model_updates_topic=cfg.topic(MODEL_UPDATES),
        )
        source = SourceConfig(
            topic=cfg.topic(TRAINING_EXAMPLES),
            group=f"recoil-learner-{arm}{cfg.topic_suffix}",
            batch_size=cfg.batch_size,
        )
        options = LearnOptions(metrics_port=self.ports.learner_metrics[arm], threads=1)
        flags = [*to_flags(learner), *to_flags(source), *to_flags(options)]
        return recoil_command("learn", *self.bootstrap, *flags)

    def simulator_command(self) -> list[str]:
        """The argv of ``recoil simulate``: users split between the arms, every arm probed."""
        from recoil.commands.simulate import SimulateOptions
        from simulator.live import LiveConfig

        cfg = self.config
        primary = cfg.arms[0]
        live = LiveConfig(
            serving_url=self.serving_url(primary),
            arm=primary,
            world=cfg.world,
            seed=cfg.seed,
            users=cfg.users,
            rate=cfg.rate,
            policy_share=cfg.policy_share,
            probe_simulations=cfg.probe_simulations,
            probe_k=cfg.probe_k,
            repeat_window=cfg.repeat_window,
        )
        options = SimulateOptions(
            topic=cfg.topic(INTERACTIONS),
            examples_topic=cfg.topic(TRAINING_EXAMPLES),
            metrics_port=self.ports.simulator_metrics,
            results=cfg.results_file,
            ab_results=cfg.ab_file,
        )
        probes = [f"--probe={arm}={self.serving_url(arm)}" for arm in cfg.arms]
        switch = ["--switch", cfg.switch] if cfg.switch else []
        flags = [*to_flags(live), *to_flags(options), *probes, "--split", cfg.split, *switch]
        return recoil_command("simulate", *self.bootstrap, *flags)

    def probe_results(self) -> list[dict[str, Any]]:
        return read_probe_results(self.config.results_file)

    def learner_metric(self, arm: str, name: str) -> float | None:
        """One unlabelled sample of a learner's /metrics, or None while it is unreachable."""
        url = f"http://127.0.0.1:{self.ports.learner_metrics[arm]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None
