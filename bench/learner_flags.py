"""The learner's settings the benchmarks that run it vary: one definition for
``recoil bench pipeline`` and ``python -m bench.learner_profile``."""

from __future__ import annotations

import argparse
from typing import Any

from learner.precision import PRECISIONS

# The ModelConfig fields the flags below set, each flag named for its field (``--max-len``
# for ``max_len``) as ``recoil learn`` names them; None: the learner's own default.
MODEL_FIELDS = ("max_len", "dislike_push_form", "negative_label_learning")


def add_learner_arguments(parser: argparse.ArgumentParser) -> None:
    """``--precision``, ``--softmax``, ``--max-len``, ``--dislike-push-form`` and
    ``--negative-label-learning``, as ``recoil learn`` takes them."""
    parser.add_argument(
        "--precision",
        default="32-true",
        choices=list(PRECISIONS),
        help="the learner's --precision (learner.precision)",
    )
    parser.add_argument(
        "--softmax", default="full", choices=["full", "sampled"], help="the learner's --softmax"
    )
    parser.add_argument(
        "--max-len", type=int, default=None, help="the learner's --max-len (its default: 30)"
    )
    parser.add_argument(
        "--dislike-push-form",
        default=None,
        choices=["additive", "projection"],  # learner.model.PushForm (no torch import here)
        help="the learner's --dislike-push-form (its default: projection)",
    )
    parser.add_argument(
        "--negative-label-learning",
        default=None,
        choices=["all", "state", "push"],  # learner.model.NegativeLearning
        help="the learner's --negative-label-learning (its default: state)",
    )


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ModelConfig fields the flags set: {field: value} for each one given."""
    return {name: getattr(args, name) for name in MODEL_FIELDS if getattr(args, name) is not None}


def model_flags(overrides: dict[str, Any]) -> list[str]:
    """``recoil learn``'s flags for ``model_overrides``'s fields."""
    return [f"--{name.replace('_', '-')}={value}" for name, value in overrides.items()]
