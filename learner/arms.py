"""The arms of the paper's ablation: how dislikes and skips reach the model.

Each arm is a pure description of two choices: what the model's *input*
history shows about past negative feedback, and which negative events become
*labels* of the not-to-recommend loss (Eq. 1). Skips always reach the input
through the dwell-time feature (a skip is dwell bucket 0), as in the paper.

===================== ============== ===================== ===================
arm                   dislike flag   disliked items         negative labels
                      in the input   in the input history
===================== ============== ===================== ===================
no_signal             zeroed         kept                   none
feature_only          yes            kept                   none
exclude_heuristic     zeroed         removed                none
feature_and_labels    yes            kept                   dislikes
feature_labels_skips  yes            kept                   dislikes and skips
===================== ============== ===================== ===================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ArmConfig:
    """One variant of the model: input transform plus label selection."""

    name: str
    dislike_feature: bool  # the per-item dislike flag is visible in the input history
    exclude_disliked: bool  # disliked items are removed from the input history
    dislike_labels: bool  # dislikes are not-to-recommend labels (else dropped)
    skip_labels: bool  # skips are not-to-recommend labels (else dropped)

    def __post_init__(self) -> None:
        if self.dislike_feature and self.exclude_disliked:
            raise ValueError(
                f"arm {self.name!r}: a removed item cannot carry a dislike flag; "
                "set at most one of dislike_feature and exclude_disliked"
            )

    @property
    def uses_negative_labels(self) -> bool:
        return self.dislike_labels or self.skip_labels

    @property
    def trained_kinds(self) -> frozenset[str]:
        """The label kinds this arm trains on: positives always, dislikes and skips where
        it takes them as not-to-recommend labels; examples of other kinds are dropped."""
        kinds = {"positive"}
        if self.dislike_labels:
            kinds.add("dislike")
        if self.skip_labels:
            kinds.add("skip")
        return frozenset(kinds)


ARMS: dict[str, ArmConfig] = {
    arm.name: arm
    for arm in (
        ArmConfig("no_signal", dislike_feature=False, exclude_disliked=False,
                  dislike_labels=False, skip_labels=False),
        ArmConfig("feature_only", dislike_feature=True, exclude_disliked=False,
                  dislike_labels=False, skip_labels=False),
        ArmConfig("exclude_heuristic", dislike_feature=False, exclude_disliked=True,
                  dislike_labels=False, skip_labels=False),
        ArmConfig("feature_and_labels", dislike_feature=True, exclude_disliked=False,
                  dislike_labels=True, skip_labels=False),
        ArmConfig("feature_labels_skips", dislike_feature=True, exclude_disliked=False,
                  dislike_labels=True, skip_labels=True),
    )
}  # fmt: skip


def resolve_arm(arm: str | ArmConfig) -> ArmConfig:
    """An ``ArmConfig`` from its name (or itself), with a clear error for unknown names."""
    if isinstance(arm, ArmConfig):
        return arm
    try:
        return ARMS[arm]
    except KeyError:
        raise ValueError(f"unknown arm {arm!r}; choose one of {sorted(ARMS)}") from None


def shared_training(arms: Iterable[str], kinds: Iterable[str]) -> dict[str, str]:
    """Each arm -> the first of ``arms`` that trains exactly as it does on examples of
    ``kinds`` (itself when none before it does).

    Two arms train the same model when they read the history alike and keep the same
    examples: the label kinds each takes, less those the log does not hold. On a
    ratings file (no dwell, so no skips) ``feature_labels_skips`` keeps exactly
    ``feature_and_labels``' examples, and with one seed trains the same weights: a
    backtest trains it once and reports it under both names.
    """
    present = frozenset(kinds)
    first: dict[tuple[bool, bool, frozenset[str]], str] = {}
    shared = {}
    for name in arms:
        arm = resolve_arm(name)
        key = (arm.dislike_feature, arm.exclude_disliked, arm.trained_kinds & present)
        shared[name] = first.setdefault(key, name)
    return shared


# The arm whose kept weights a stage starts from (``learner.offline.train_offline``'s
# ``base``): the learned model with its dislike parameters at their starting values.
STAGE_BASE = "exclude_heuristic"


def trains_as_stage(arm: str | ArmConfig) -> bool:
    """Whether ``arm`` can train as a stage on ``STAGE_BASE``: it reads the dislike flag
    (so it has dislike parameters) and takes not-to-recommend labels (so they have
    something to learn from)."""
    arm = resolve_arm(arm)
    return arm.dislike_feature and arm.uses_negative_labels


def stage_plan(trained: Iterable[str], stage: bool) -> tuple[list[str], list[str]]:
    """The arms that train first and the stages that train after them, in order.

    With ``stage`` the arms that can (:func:`trains_as_stage`) train second, on
    ``STAGE_BASE``'s weights; ``STAGE_BASE`` then trains first even when it is not
    among ``trained`` (it is the stages' start, not a reported arm)."""
    trained = list(trained)
    staged = [arm for arm in trained if stage and trains_as_stage(arm)]
    alone = [arm for arm in trained if arm not in staged]
    if staged and STAGE_BASE not in alone:
        alone.append(STAGE_BASE)
    return alone, staged
