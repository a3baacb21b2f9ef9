"""The paper's ablation on the synthetic world: every arm trained on the same logged data.

Steps (``run_experiment``):

1. Build the world and log ``steps_per_user`` impressions per user through the
   engagement-driven logging policy (``simulator.policy``).
2. Hold out each user's last ``holdout_events`` events; window the rest into
   training examples with ``recoil.core.windows.events_to_examples`` (the streams' rules).
3. For each arm: train (``learner.offline.train_offline``), run the
   counterfactual probe, the closed loop, Recall@K / NDCG@K of held-out positives,
   and the backtest's next-item measures on the same held-out events (HR@10 of
   positives, of disliked items, and of a disliked item's creator).

``ablation.json`` holds ``{"arms": {ARM: {responsiveness_cluster,
responsiveness_creator, ci95_cluster, ci95_creator, mass_responsiveness_cluster,
mass_responsiveness_creator, dislike_rate,
repeat_dislike_creator_rate, recall_at_k, ndcg_at_k, hr_at_10,
hr_at_10_dislikes, hr_at_10_dislike_creator}}, "config": {...}}``;
diagnostics (shares, intervals against ``no_signal``, training reports) go to
``details.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from learner.arms import ARMS, STAGE_BASE, stage_plan
from learner.model import ModelConfig
from learner.offline import (
    TrainConfig,
    TrainedRecommender,
    check_stage_model,
    offline_labels,
    offline_model,
    train_offline,
)
from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig
from recoil.core.records import TrainingExample
from recoil.core.windows import History, events_to_examples, user_histories
from simulator.closed_loop import ClosedLoopConfig, ClosedLoopResult, run_closed_loop
from simulator.dislike_effect import dislike_effect
from simulator.evaluation import (
    HoldoutRanking,
    NextItemRanking,
    holdout_ranking,
    next_item_cases,
    next_item_ranking,
    paired_changes,
    split_last_events,
)
from simulator.logged_data import log_statistics, logged_responsiveness, simulate_logs
from simulator.metrics import bootstrap_relative_change, relative_change
from simulator.parallel import kept_model, map_arms_then
from simulator.policy import LoggingPolicyConfig
from simulator.probe import ProbeConfig, Responsiveness, run_probe
from simulator.report import (
    item_offsets_json,
    push_weights_json,
    trained_model_json,
    write_ablation,
)
from simulator.served_logs import ServedLoggingConfig, simulate_served_logs
from simulator.serving import UserStart, starts_from_log
from simulator.world import World, WorldConfig, world_preset

log = logging.getLogger(__name__)

BASELINE_ARM = "no_signal"
HEURISTIC_ARM = "exclude_heuristic"
NEXT_ITEM_K = 10  # HR@10 of held-out events, as the backtest
# branch every 4th long dwell for the world's own dislike effect: ~26,000 cases in the
# medium world, ~21 s on one core (every one: ~45 s, within half a point of it)
DISLIKE_EFFECT_EVERY = 4


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything an experiment run depends on; recorded in ``ablation.json``."""

    world: WorldConfig
    policy: LoggingPolicyConfig = field(default_factory=LoggingPolicyConfig)
    # None: the heuristic policy logs everything (the measured default); else a trained
    # no_signal model serves the logs after a heuristic bootstrap (simulator.served_logs).
    served: ServedLoggingConfig | None = None
    # the offline ablation's: dislikes weigh learner.offline.OFFLINE_DISLIKE_WEIGHT and
    # move the item rows too
    labels: LabelConfig = field(default_factory=offline_labels)
    model: ModelConfig = field(default_factory=offline_model)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    closed_loop: ClosedLoopConfig = field(default_factory=ClosedLoopConfig)
    holdout_events: int = 10  # last events per user held out for Recall@K / NDCG@K
    recall_k: int = 20  # K of Recall@K and NDCG@K
    arms: tuple[str, ...] = tuple(ARMS)  # arms trained, in report order
    # Train the labelled arms as a stage on exclude_heuristic's weights, as the backtest
    # does by default. Off here: in the medium world a stage took a fifth to a half of the
    # dislike rate off that the arm from scratch does (docs/experiment.md, "The labelled
    # arm as a stage on the heuristic").
    stage_on_heuristic: bool = False

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ValueError(f"unknown arms {unknown}; choose from {sorted(ARMS)}")
        if self.stage_on_heuristic:
            check_stage_model(self.arms, self.model)
        if self.holdout_events >= self.world.steps_per_user:
            raise ValueError("holdout_events must be smaller than the world's steps_per_user")
        if self.model.max_len > self.labels.history_length:
            raise ValueError(
                f"model.max_len ({self.model.max_len}) must not exceed labels.history_length "
                f"({self.labels.history_length}): the model cannot read more than the window"
            )


@dataclass(frozen=True)
class RunSize:
    """How much work a world preset gets: training and closed-loop sizes."""

    train_steps: int  # optimizer steps per arm
    batch_size: int  # examples per step
    loop_users: int  # closed-loop users
    loop_steps: int  # closed-loop impressions per user
    bootstrap_steps: int  # heuristic-policy impressions per user before the model serves
    serving_train_steps: int  # training steps of the serving (logging) model


# Chosen so tiny runs in seconds (few examples: small batches, else Lightning spends
# its time restarting epochs) and medium (the default) fits 30 minutes on 2 CPU cores.
RUN_SIZES: dict[str, RunSize] = {
    # (train_steps, batch_size, loop_users, loop_steps, ...)
    "tiny": RunSize(60, 64, 60, 20, bootstrap_steps=20, serving_train_steps=60),
    "small": RunSize(1000, 512, 500, 50, bootstrap_steps=40, serving_train_steps=500),
    "medium": RunSize(2000, 512, 1000, 100, bootstrap_steps=50, serving_train_steps=1000),
    "large": RunSize(4000, 1024, 2000, 100, bootstrap_steps=70, serving_train_steps=2000),
    "aversion": RunSize(1000, 512, 500, 50, bootstrap_steps=40, serving_train_steps=500),
}


def experiment_config(
    world: str,
    seed: int = 0,
    simulations: int = ProbeConfig.simulations,
    k: int = ProbeConfig.k,
    max_steps: int | None = None,
    arms: tuple[str, ...] = tuple(ARMS),
    served: bool = False,
) -> ExperimentConfig:
    """The documented defaults for a world preset; one seed drives every random choice."""
    world_config = world_preset(world, seed)
    size = RUN_SIZES[world]
    softmax: Literal["full", "sampled"] = "sampled" if world == "large" else "full"  # 100k items
    return ExperimentConfig(
        world=world_config,
        train=TrainConfig(
            max_steps=max_steps or size.train_steps,
            batch_size=size.batch_size,
            seed=seed,
            softmax=softmax,
        ),
        probe=ProbeConfig(simulations=simulations, k=k, seed=seed),
        closed_loop=ClosedLoopConfig(
            users=min(size.loop_users, world_config.num_users), steps=size.loop_steps, seed=seed
        ),
        arms=arms,
        served=ServedLoggingConfig(
            bootstrap_steps=size.bootstrap_steps, train_steps=size.serving_train_steps
        )
        if served
        else None,
    )


@dataclass
class ArmOutcome:
    """Everything measured for one arm."""

    responsiveness: Responsiveness
    loop: ClosedLoopResult
    ranking: HoldoutRanking
    next_item: NextItemRanking
    train_seconds: float
    eval_seconds: float
    training: dict[str, Any]
    model: ModelConfig  # as trained: table sizes grown to the vocabulary
    kept: TrainedRecommender | None = None  # the stages' base: its model, for them to start from


@dataclass(frozen=True)
class PreparedData:
    """What every arm shares: the world, its training examples and evaluation inputs."""

    world: World
    stats: dict[str, Any]
    examples: list[TrainingExample]
    split_histories: dict[str, History]  # each user's history at the time split
    test_events: list[InteractionEvent]  # each user's held-out last events
    starts: list[UserStart]  # closed-loop users as the logging left them
    case_histories: list[History]  # next-item test cases: the history before each
    cases: list[InteractionEvent]  # ... and the held-out event itself


def prepare_data(config: ExperimentConfig, progress: bool = False) -> PreparedData:
    world = World(config.world)
    if config.served is None:
        world_log = simulate_logs(world, config.policy, progress=progress)
    else:
        world_log = simulate_served_logs(
            world, config.policy, config.served, config.model, config.train, config.labels,
            progress,
        )  # fmt: skip
    effect = None  # the logging policy's world only: served logs come from another process
    if config.served is None:
        effect = dislike_effect(
            world, config.policy, config.labels, every=DISLIKE_EFFECT_EVERY, progress=progress
        )
    train_events, test_events = split_last_events(world_log.events, config.holdout_events)
    split_histories = user_histories(train_events, config.labels)
    case_histories, cases = next_item_cases(split_histories, test_events, config.labels)
    return PreparedData(
        world=world,
        stats={
            **log_statistics(world_log.events, config.labels),
            "logged_responsiveness": logged_responsiveness(world_log.events, config.labels),
            "dislike_effect": effect,
        },
        examples=events_to_examples(train_events, config.labels),
        split_histories=split_histories,
        test_events=test_events,
        starts=starts_from_log(world_log, config.closed_loop.users, config.labels),
        case_histories=case_histories,
        cases=cases,
    )


def run_arm(
    arm: str,
    data: PreparedData,
    config: ExperimentConfig,
    progress: bool,
    base: TrainedRecommender | None = None,
    keep: bool = False,
) -> ArmOutcome:
    """Train one arm (as a stage on ``base``, if given) and measure it: probe, closed
    loop, held-out ranking. ``keep`` returns the trained model with the figures."""
    t0 = time.perf_counter()
    recommender = train_offline(data.examples, arm, config.model, config.train, progress, base=base)
    t1 = time.perf_counter()
    log.info("arm %s: trained in %.1fs; probing and closed loop", arm, t1 - t0)
    # Evaluation never needs gradients; inference mode is also what lets top_k mask
    # seen items in place on the scores it computed under inference mode.
    with torch.inference_mode():
        catalog = data.world.catalog
        probe = run_probe(recommender, catalog, config.probe, config.labels, progress)
        loop = run_closed_loop(
            data.world, recommender, data.starts, config.closed_loop, config.labels, progress
        )
        ranking = holdout_ranking(
            recommender, data.split_histories, data.test_events, config.labels, config.recall_k
        )
        next_item = next_item_ranking(
            recommender, data.case_histories, data.cases, config.labels, NEXT_ITEM_K,
            creator_of=dict(zip(catalog.item_ids, catalog.creator_ids, strict=True)),
        )  # fmt: skip
    report = recommender.report
    training = {} if report is None else {
        "examples": report.num_examples, "negative_labels": report.num_negative,
        "steps": report.steps, "steps_per_second": report.steps_per_second,
        "final_loss": report.loss_curve[-1][1] if report.loss_curve else None,
        "best_step": report.best_step,
        # what the trained model does with a dislike beyond the heuristic's drop
        "push_weights": push_weights_json(recommender.model),
        "item_offsets": item_offsets_json(recommender.model, recommender.item_ids()),
        "stage_on": None if base is None else base.arm.name,
    }  # fmt: skip
    log.info(
        "arm %s: responsiveness cluster %+.1f%% creator %+.1f%% (in mass %+.1f%% / %+.1f%%), "
        "dislike rate %.3f%%, Recall@%d %.4f (%.1fs)",
        arm, 100 * probe.cluster, 100 * probe.creator,
        100 * (probe.mass_cluster if probe.mass_cluster is not None else float("nan")),
        100 * (probe.mass_creator if probe.mass_creator is not None else float("nan")),
        100 * loop.dislike_rate,
        config.recall_k, ranking.recall, time.perf_counter() - t0,
    )  # fmt: skip
    return ArmOutcome(
        probe, loop, ranking, next_item, t1 - t0, time.perf_counter() - t1, training,
        recommender.model.current_config(), recommender if keep else None,
    )  # fmt: skip


def run_arms(
    data: PreparedData, config: ExperimentConfig, workers: int, progress: bool
) -> dict[str, ArmOutcome]:
    """Every arm, one after another or in ``workers`` forked processes (same results)."""
    if workers > 1:
        log.info("training %d arms in %d worker processes", len(config.arms), workers)
        progress = False  # bars of parallel workers would interleave; log lines remain
    alone, staged = stage_plan(config.arms, config.stage_on_heuristic)
    bases: list[TrainedRecommender] = []  # the stages' start, once trained

    def task(arm: str) -> ArmOutcome:
        base = bases[0] if arm in staged else None
        return run_arm(arm, data, config, progress, base, keep=bool(staged) and arm == STAGE_BASE)

    def hand_over(done: dict[str, ArmOutcome]) -> None:
        bases.append(kept_model(done[STAGE_BASE].kept))

    outcomes = map_arms_then(task, alone, staged, workers, hand_over)
    return {arm: outcomes[arm] for arm in config.arms}


def run_experiment(
    config: ExperimentConfig, out_dir: Path, progress: bool = True, workers: int = 1
) -> dict[str, Any]:
    """Run every arm, write ``ablation.json``/``.md``/``responsiveness.png``; return the JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = prepare_data(config, progress)
    data_seconds = time.perf_counter() - started
    log.info(
        "world %s: %d impressions, %d training examples, dislikes %.2f%%, skips %.1f%% (%.1fs)",
        config.world.name, data.stats["impressions"], len(data.examples),
        100 * data.stats["dislike_rate"], 100 * data.stats["skip_rate"], data_seconds,
    )  # fmt: skip
    outcomes = run_arms(data, config, workers, progress)
    total_seconds = time.perf_counter() - started
    ablation = ablation_json(config, data.stats, outcomes, data_seconds, total_seconds)
    ablation["config"]["workers"] = workers
    write_ablation(out_dir, ablation, details_json(config, outcomes))
    log.info("experiment done in %.1fs; results in %s", total_seconds, out_dir)
    return ablation


def ablation_json(
    config: ExperimentConfig,
    stats: dict[str, Any],
    outcomes: dict[str, ArmOutcome],
    data_seconds: float,
    total_seconds: float,
) -> dict[str, Any]:
    arms = {
        arm: {
            "responsiveness_cluster": o.responsiveness.cluster,
            "responsiveness_creator": o.responsiveness.creator,
            "ci95_cluster": list(o.responsiveness.ci95_cluster),
            "ci95_creator": list(o.responsiveness.ci95_creator),
            # the same change in the model's probability mass: the logs' yardstick's
            # quantity (world_stats.logged_responsiveness), see simulator.probe
            "mass_responsiveness_cluster": o.responsiveness.mass_cluster,
            "mass_responsiveness_creator": o.responsiveness.mass_creator,
            "dislike_rate": o.loop.dislike_rate,
            "repeat_dislike_creator_rate": o.loop.repeat_dislike_creator_rate,
            "recall_at_k": o.ranking.recall,
            "ndcg_at_k": o.ranking.ndcg,
            "hr_at_10": o.next_item.hr_positive,
            "hr_at_10_dislikes": o.next_item.hr_dislike,
            "hr_at_10_dislike_creator": o.next_item.hr_dislike_creator,
        }
        for arm, o in outcomes.items()
    }
    return {
        "arms": arms,
        "config": {
            "world": config.world.to_dict(),
            "world_stats": stats,
            "logging_policy": asdict(config.policy),
            "served_logging": None if config.served is None else asdict(config.served),
            "labels": asdict(config.labels),
            "model": trained_model_json({arm: o.model for arm, o in outcomes.items()}),
            "train": asdict(config.train),
            "probe": asdict(config.probe),
            "closed_loop": asdict(config.closed_loop),
            "holdout_events": config.holdout_events,
            "k": config.recall_k,
            "stage_on_heuristic": config.stage_on_heuristic,
            "seconds": {
                "data": round(data_seconds, 1),
                "total": round(total_seconds, 1),
                **{
                    f"arm_{a}": round(o.train_seconds + o.eval_seconds, 1)
                    for a, o in outcomes.items()
                },
            },
        },
    }


def _dislike_rate_change(
    base: ArmOutcome, other: ArmOutcome, rng: np.random.Generator
) -> tuple[float, tuple[float, float]]:
    """``other``'s closed-loop dislike rate relative to ``base``'s, and its 95% interval:
    the loops faced the same user draws, so the users are resampled in pairs."""
    base_dislikes = np.array(base.loop.per_user_dislikes, dtype=float)
    dislikes = np.array(other.loop.per_user_dislikes, dtype=float)
    return (
        relative_change(base_dislikes, dislikes),
        bootstrap_relative_change(base_dislikes, dislikes, rng),
    )


def details_json(config: ExperimentConfig, outcomes: dict[str, ArmOutcome]) -> dict[str, Any]:
    """Per-arm diagnostics, and each arm's change against ``no_signal`` with 95% intervals."""
    rng = np.random.default_rng([config.probe.seed, 9])
    base = outcomes.get(BASELINE_ARM)
    heuristic = outcomes.get(HEURISTIC_ARM)
    # Is the lowest dislike rate a difference or noise? Every arm's closed loop faces the
    # same user draws, so each arm's rate against the lowest is paired by user (an rng
    # of its own, so the intervals above stay as they were).
    lowest = min(outcomes, key=lambda a: outcomes[a].loop.dislike_rate, default=None)
    lowest_rng = np.random.default_rng([config.probe.seed, 10])
    result: dict[str, Any] = {}
    for arm, o in outcomes.items():
        entry: dict[str, Any] = {
            "probe": o.responsiveness.to_dict(),
            "closed_loop": o.loop.to_dict(),
            "holdout_users": len(o.ranking.users),
            "training": o.training,
            "train_seconds": round(o.train_seconds, 1),
            "eval_seconds": round(o.eval_seconds, 1),
        }
        if base is not None and arm != BASELINE_ARM:
            change, interval = _dislike_rate_change(base, o, rng)
            entry["vs_no_signal"] = {
                "dislike_rate": change,
                "dislike_rate_ci95": interval,
                "repeat_dislike_creator_rate": relative_change(
                    np.array([base.loop.repeat_dislike_creator_rate]),
                    np.array([o.loop.repeat_dislike_creator_rate]),
                ),
                "recall_at_k": relative_change(
                    base.ranking.per_user_recall, o.ranking.per_user_recall
                ),
                "recall_at_k_ci95": bootstrap_relative_change(
                    base.ranking.per_user_recall, o.ranking.per_user_recall, rng
                ),
                "ndcg_at_k": relative_change(base.ranking.per_user_ndcg, o.ranking.per_user_ndcg),
                "next_item": paired_changes(base.next_item, o.next_item, rng),
            }
        if heuristic is not None and arm not in (BASELINE_ARM, HEURISTIC_ARM):
            entry["next_item_vs_exclude_heuristic"] = paired_changes(
                heuristic.next_item, o.next_item, rng
            )
        if lowest is not None and arm != lowest:
            change, interval = _dislike_rate_change(outcomes[lowest], o, lowest_rng)
            entry["dislike_rate_vs_lowest"] = {"arm": lowest, "change": change, "ci95": interval}
        result[arm] = entry
    return result
