"""``recoil experiment``: the paper's responsiveness ablation on the synthetic world."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

WORLDS = ("tiny", "small", "medium", "large")
ARM_NAMES = (
    "no_signal", "feature_only", "exclude_heuristic", "feature_and_labels", "feature_labels_skips",
)  # fmt: skip


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "experiment",
        help="train every arm on one synthetic world's logs and measure responsiveness",
        description="Simulate a world, log it through an engagement-driven policy, train each "
        "arm on the same examples, and measure counterfactual responsiveness to a dislike "
        "(paper section 4), closed-loop dislike rates and Recall@K/NDCG@K. Writes "
        "DIR/ablation.json, DIR/ablation.md, DIR/responsiveness.png and DIR/details.json.",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    parser.add_argument("--world", choices=WORLDS, default="medium", help="world preset")
    parser.add_argument("--simulations", type=_positive, default=2000, help="probe simulations")
    parser.add_argument("--k", type=_positive, default=50, help="probe branch step")
    parser.add_argument("--seed", type=int, default=0, help="seeds world, training and probes")
    parser.add_argument(
        "--max-steps",
        type=_positive,
        default=None,
        help="training steps per arm (default: per world)",
    )
    parser.add_argument(
        "--arms", default=",".join(ARM_NAMES), help="comma-separated arms (default: all five)"
    )
    parser.add_argument(
        "--logging",
        choices=("served", "heuristic"),
        default="heuristic",
        help="how the training logs are made: the engagement-driven heuristic policy logs "
        "everything (heuristic, default), or it bootstraps and a trained no_signal model serves "
        "the rest like the paper's production system (served)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="arms trained in parallel processes, one CPU thread each (default: one per core)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from recoil.kafka_settings import ConfigError

    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    unknown = [a for a in arms if a not in ARM_NAMES]
    if unknown or not arms:
        raise ConfigError(f"--arms: unknown {unknown or 'empty list'}; choose from {ARM_NAMES}")

    from simulator.experiment import experiment_config, run_experiment
    from simulator.parallel import default_workers

    config = experiment_config(
        args.world, seed=args.seed, simulations=args.simulations, k=args.k,
        max_steps=args.max_steps, arms=arms, served=args.logging == "served",
    )  # fmt: skip
    workers = args.workers or default_workers(len(arms))
    result = run_experiment(config, args.out, progress=not args.no_progress, workers=workers)
    print((args.out / "ablation.md").read_text(), end="")
    return 0 if result["arms"] else 1
