"""``recoil experiment``: the paper's responsiveness ablation on the synthetic world."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recoil.commands._ablation_args import (
    add_arm_arguments,
    add_weight_average_argument,
    check_seed,
    parse_arms,
    parse_labels,
    parse_model,
    positive_int,
    weight_average,
)
from recoil.core.errors import ConfigError
from recoil.core.settings import add_arguments, add_command, from_args

WORLDS = ("tiny", "small", "medium", "large", "aversion")  # simulator.world.WORLD_PRESETS


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "experiment",
        run,
        help="train every arm on one synthetic world's logs and measure responsiveness",
        description="Simulate a world, log it through an engagement-driven policy, train each "
        "arm on the same examples, and measure counterfactual responsiveness to a dislike "
        "(paper section 4), closed-loop dislike rates and Recall@K/NDCG@K. Writes "
        "DIR/ablation.json, DIR/ablation.md, DIR/responsiveness.png and DIR/details.json.",
        deferred=add_probe_settings,
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    parser.add_argument("--world", choices=WORLDS, default="medium", help="world preset")
    parser.add_argument("--seed", type=int, default=0, help="seeds world, training and probes")
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=None,
        help="training steps per arm (default: per world)",
    )
    parser.add_argument(
        "--logging",
        choices=("served", "heuristic"),
        default="heuristic",
        help="how the training logs are made: the engagement-driven heuristic policy logs "
        "everything (heuristic, default), or it bootstraps and a trained no_signal model serves "
        "the rest like the paper's production system (served)",
    )
    add_weight_average_argument(parser, "default 0: experiments train a fixed number of steps")
    parser.add_argument(
        "--stage",
        action="store_true",
        help="train feature_and_labels and feature_labels_skips as a stage on "
        "exclude_heuristic's weights, only their dislike parameters learning, as "
        "`recoil backtest` does by default (docs/experiment.md)",
    )
    add_arm_arguments(parser)


# The probe's settings on the command line; the probe's seed is --seed.
PROBE_SETTINGS = ("simulations", "k")


def add_probe_settings(parser: argparse.ArgumentParser) -> None:
    """ProbeConfig's settings (simulator.probe imports numpy: read when the command is used)."""
    from simulator.probe import ProbeConfig

    add_arguments(parser, ProbeConfig, only=PROBE_SETTINGS)


def run(args: argparse.Namespace) -> int:
    arms = parse_arms(args.arms)
    check_seed(args.seed)
    decay = weight_average(args)
    model_changes = args.model

    from dataclasses import replace

    from simulator.experiment import experiment_config, run_experiment
    from simulator.parallel import default_workers
    from simulator.probe import ProbeConfig

    probe = from_args(ProbeConfig, args, only=PROBE_SETTINGS, seed=args.seed)
    config = experiment_config(
        args.world,
        seed=args.seed,
        simulations=probe.simulations,
        k=probe.k,
        max_steps=args.max_steps,
        arms=arms,
        served=args.logging == "served",
    )
    if model_changes:
        model = parse_model(model_changes, config.model)
        try:  # ExperimentConfig's own rule: the model reads no more than the labels' window
            config = replace(config, model=model)
        except ValueError as exc:
            raise ConfigError(f"--model: {exc}") from None
    if args.label:
        config = replace(config, labels=parse_labels(args.label, config.labels))
    if decay is not None:
        config = replace(config, train=replace(config.train, weight_average_decay=decay))
    if args.stage:
        try:
            config = replace(config, stage_on_heuristic=True)
        except ValueError as exc:
            raise ConfigError(
                f"--stage: {exc}; leave out --stage to train them from scratch"
            ) from None
    workers = args.workers or default_workers(len(arms))
    result = run_experiment(config, args.out, progress=not args.no_progress, workers=workers)
    print((args.out / "ablation.md").read_text(), end="")
    return 0 if result["arms"] else 1
