"""The learner's settings the benchmarks that run it vary: one definition for
``recoil bench pipeline`` and ``python -m bench.learner_profile``."""

from __future__ import annotations

import argparse

from learner.precision import PRECISIONS


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
