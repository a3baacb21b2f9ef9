"""The options of the commands that train every arm of the ablation (experiment, backtest)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import TYPE_CHECKING, Any

from learner.arms import ARMS
from recoil.core.checks import MAX_SEED
from recoil.core.errors import ConfigError

if TYPE_CHECKING:  # learner.model imports torch: not at CLI start-up
    from learner.model import ModelConfig
    from recoil.core.labels import LabelConfig

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
    parser.add_argument(
        "--model",
        default="",
        metavar="FIELD=VALUE,...",
        help="model settings other than the defaults, e.g. 'flagged_input=embed,"
        "dislike_push_init=0' (fields of learner.model.ModelConfig; the ablation's labels "
        "move the item rows by default, negative_label_learning=all, the live model's "
        "the state alone)",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a labelling setting other than the default, as recoil worker takes it, e.g. "
        "--label dislike_weight=1 (w of the not-to-recommend loss: 50 here by default, 1 in "
        "the live worker; fields of recoil.core.labels.LabelConfig but history_length; "
        "repeatable)",
    )


def add_weight_average_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """``--weight-average DECAY``: the moving average of the weights training returns
    (``TrainConfig.weight_average_decay``); ``default`` says what the command does
    without it."""
    parser.add_argument(
        "--weight-average",
        type=float,
        default=None,
        metavar="DECAY",
        help=f"keep a moving average of the weights with this decay per step; validation "
        f"checks and training returns it ({default}; 0 keeps the raw weights)",
    )


def weight_average(args: argparse.Namespace) -> float | None:
    """``--weight-average`` checked (None: not given); ConfigError outside [0, 1)."""
    decay: float | None = args.weight_average
    if decay is not None and not 0.0 <= decay < 1.0:
        raise ConfigError(f"--weight-average must be in [0, 1) (0: off), got {decay}")
    return decay


def check_seed(seed: int) -> None:
    """``--seed`` must be one Lightning's ``seed_everything`` (and numpy) take."""
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed must be in 0..{MAX_SEED}, got {seed}")


def parse_arms(text: str) -> tuple[str, ...]:
    """The arms named by ``--arms``, in its order; ConfigError for an unknown or none."""
    arms = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in arms if a not in ARM_NAMES]
    if unknown or not arms:
        raise ConfigError(f"--arms: unknown {unknown or 'empty list'}; choose from {ARM_NAMES}")
    return arms


def _convert(field: str, kind: Any, text: str) -> object:
    """``text`` as the type of ModelConfig's ``field`` (bool, int, float or a string choice)."""
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"--model {field}: expected true or false, got {text!r}")
        return text.lower() in ("true", "1")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"--model {field}: expected {kind.__name__}, got {text!r}") from None
    return text


def parse_labels(overrides: list[str], base: LabelConfig | None = None) -> LabelConfig:
    """``base`` (default: ``LabelConfig()``) with the ``--label NAME=VALUE`` overrides;
    ConfigError naming the setting. The history length stays the model's window."""
    from recoil.core.labels import LabelConfig, override_labels

    return override_labels(base or LabelConfig(), overrides, fixed=("history_length",))


def parse_model(text: str, base: ModelConfig | None = None) -> ModelConfig:
    """``base`` (default: ``ModelConfig()``) with the ``FIELD=VALUE,...`` of ``--model``;
    ConfigError naming the field for an unknown field or a value of the wrong type."""
    from learner.model import ModelConfig

    config = base or ModelConfig()
    hints = typing.get_type_hints(ModelConfig)
    known = {f.name for f in dataclasses.fields(ModelConfig)} - {"num_items", "num_creators"}
    changes: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        field, sep, value = part.partition("=")
        field = field.strip()
        if not sep or field not in known:
            raise ConfigError(f"--model: {part!r} is not FIELD=VALUE with FIELD in {sorted(known)}")
        changes[field] = _convert(field, hints[field], value.strip())
    try:
        return dataclasses.replace(config, **changes)
    except ValueError as exc:
        raise ConfigError(f"--model: {exc}") from None
