"""The options of the commands that train every arm of the ablation (experiment, backtest)."""

from __future__ import annotations

import argparse

from learner.arms import ARMS
from recoil.kafka_settings import ConfigError

ARM_NAMES = tuple(ARMS)  # learner.arms is plain dataclasses: cheap at CLI start-up


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arm_arguments(parser: argparse.ArgumentParser) -> None:
    """``--arms``, ``--workers`` and ``--no-progress``: which arms, how many in parallel."""
    parser.add_argument(
        "--arms", default=",".join(ARM_NAMES), help="comma-separated arms (default: all five)"
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="arms trained in parallel processes, one CPU thread each (default: one per core)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_arms(text: str) -> tuple[str, ...]:
    """The arms named by ``--arms``, in its order; ConfigError for an unknown or none."""
    arms = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in arms if a not in ARM_NAMES]
    if unknown or not arms:
        raise ConfigError(f"--arms: unknown {unknown or 'empty list'}; choose from {ARM_NAMES}")
    return arms
