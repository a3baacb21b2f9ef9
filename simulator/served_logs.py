"""Training logs served by a production-like recommender, as in the paper.

The paper's training data came from its production system, whose retrieval
model was the baseline that used no dislike signal. What such a system shows
after a dislike is what *it* scores highly: more of the creator and cluster
just engaged with. Its own top items are then what users dislike again, so
the not-to-recommend labels land on items the model gives real probability
to -- exactly where Eq. 1's gradient ``w * p / (1 - p)`` is large. Logs from a
heuristic policy alone put dislikes on items a trained model already ranks
low, and the not-to-recommend term has almost nothing to push against.

So the logs are made in two stages:

1. bootstrap: each user's first ``bootstrap_steps`` impressions come from the
   heuristic engagement policy (``simulator.policy``);
2. served: a ``serving_arm`` model (``no_signal`` by default: the paper's
   production baseline) is trained on the bootstrap log and serves the
   remaining impressions (``simulator.serving``: top ``slate_size`` unseen
   items, one shown, ``explore`` of impressions uniformly random).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import torch

from learner.model import ModelConfig
from learner.offline import TrainConfig, train_offline
from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig
from recoil.core.windows import events_to_examples
from simulator.logged_data import WorldLog, simulate_logs
from simulator.policy import LoggingPolicyConfig
from simulator.serving import ServingConfig, serve_users, starts_from_log
from simulator.world import World

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedLoggingConfig:
    """How the production-like serving stage of the logs runs."""

    bootstrap_steps: int = 50  # first impressions per user from the heuristic policy
    serving_arm: str = "no_signal"  # the production model: the paper's no-dislike baseline
    train_steps: int = 1000  # training steps of the serving model on the bootstrap log
    slate_size: int = 20  # retrieved items the shown one is drawn from
    explore: float = 0.1  # share of served impressions that are uniformly random

    def __post_init__(self) -> None:
        if self.bootstrap_steps < 1 or self.train_steps < 1 or self.slate_size < 1:
            raise ValueError("ServedLoggingConfig: bootstrap_steps, train_steps, slate_size >= 1")
        if not 0.0 <= self.explore <= 1.0:
            raise ValueError("ServedLoggingConfig.explore must be in [0, 1]")


def simulate_served_logs(
    world: World,
    policy: LoggingPolicyConfig,
    served: ServedLoggingConfig,
    model: ModelConfig,
    train: TrainConfig,
    labels: LabelConfig,
    progress: bool = False,
) -> WorldLog:
    """Bootstrap with the heuristic policy, then serve the rest with a trained model."""
    total = world.config.steps_per_user
    if served.bootstrap_steps >= total:
        raise ValueError(
            f"bootstrap_steps ({served.bootstrap_steps}) must be below the world's "
            f"steps_per_user ({total})"
        )
    started = time.perf_counter()
    bootstrap = simulate_logs(world, policy, progress=progress, steps=served.bootstrap_steps)
    examples = events_to_examples(bootstrap.events, labels)
    serving_train = replace(train, max_steps=served.train_steps)
    recommender = train_offline(examples, served.serving_arm, model, serving_train, progress)
    log.info(
        "serving model (%s) trained on %d bootstrap examples in %.1fs",
        served.serving_arm, len(examples), time.perf_counter() - started,
    )  # fmt: skip
    starts = starts_from_log(bootstrap, world.config.num_users, labels)
    serving = ServingConfig(
        steps=total - served.bootstrap_steps, slate_size=served.slate_size,
        explore=served.explore, seed=world.config.seed, stream=4,
    )  # fmt: skip
    with torch.inference_mode():  # no gradients; lets top_k mask its scores in place
        served_events, after = serve_users(
            world, recommender, starts, serving, labels, progress, "serving world users"
        )
    by_user: dict[str, list[InteractionEvent]] = {}
    for event in bootstrap.events:
        by_user.setdefault(event.user_id, []).append(event)
    for start, extra in zip(starts, served_events, strict=True):
        by_user[f"u{start.state.user}"].extend(extra)
    events = [event for user_events in by_user.values() for event in user_events]
    return WorldLog(
        events=events,
        final_states=[s.state for s in after],
        end_times=[s.time for s in after],
    )
