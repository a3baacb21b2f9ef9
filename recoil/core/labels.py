"""Labelling rules: which events become training labels, of what kind and weight.

Pure functions of one event and a :class:`LabelConfig`. Precedence, strongest
signal first:

1. ``disliked`` (or ``dismissed`` when ``dismiss_is_dislike``) -> ``dislike``,
   weight ``dislike_weight``; a dislike after a long dwell is still a dislike.
2. ``liked`` or a long dwell -> ``positive``, weight ``positive_weight``
   (``like_weight`` when liked).
3. a skip (dwell below the skip threshold) -> ``skip``, weight ``skip_weight``.
4. otherwise no label; the item still enters the user's history.

Dwell is judged by the ratio dwell / duration when the duration is known, by
seconds when it is not.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from recoil.core.checks import FLOAT32_MAX
from recoil.core.errors import ConfigError
from recoil.core.events import InteractionEvent
from recoil.core.records import NUM_DWELL_BUCKETS, NUM_GAP_BUCKETS, LabelKind


@dataclass(frozen=True)
class LabelConfig:
    """Thresholds and weights for labelling; defaults follow short-video practice."""

    long_dwell_ratio: float = 0.8  # watched >= 80% of the item: a positive
    long_dwell_seconds: float = 20.0  # same, when the item's duration is unknown
    skip_ratio: float = 0.1  # watched < 10%: a skip
    skip_seconds: float = 2.0  # same, when the duration is unknown
    positive_weight: float = 1.0  # r for a long dwell
    like_weight: float = 1.0  # r for an explicit like
    dislike_weight: float = 1.0  # w for a dislike (the paper's explicit negative)
    skip_weight: float = 0.25  # w for a skip: denser and weaker than a dislike
    dismiss_is_dislike: bool = True  # a dismissal is an explicit negative too
    history_length: int = 50  # items of history kept per user and put into an example

    def __post_init__(self) -> None:
        if not 0 <= self.skip_ratio < self.long_dwell_ratio:
            raise ValueError("need 0 <= skip_ratio < long_dwell_ratio")
        if not 0 <= self.skip_seconds < self.long_dwell_seconds:
            raise ValueError("need 0 <= skip_seconds < long_dwell_seconds")
        weights = (self.positive_weight, self.like_weight, self.dislike_weight, self.skip_weight)
        if min(weights) < 0:
            raise ValueError("label weights must be >= 0")
        for name in ("positive_weight", "like_weight", "dislike_weight", "skip_weight"):
            # training holds the weights as float32: a larger one is inf there, and stops it
            if not getattr(self, name) <= FLOAT32_MAX:
                raise ValueError(
                    f"label weights must be at most {FLOAT32_MAX:.3g} (float32), got "
                    f"{name}={getattr(self, name)}"
                )
        if self.history_length < 1:
            raise ValueError("history_length must be >= 1")


def override_labels(
    base: LabelConfig, overrides: Sequence[str], fixed: Collection[str] = ()
) -> LabelConfig:
    """``base`` with the ``NAME=VALUE`` overrides of ``--label`` (``-`` may stand for
    ``_`` in a name). ConfigError naming the setting for an unknown name, a name in
    ``fixed`` (set by a flag of its own), a value of the wrong type or an invalid
    combination."""
    fields = {f.name: f for f in dataclasses.fields(LabelConfig) if f.name not in fixed}
    values: dict[str, object] = {}
    for item in overrides:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            choices = ", ".join(sorted(fields))
            raise ConfigError(f"--label {item!r}: expected NAME=VALUE with NAME one of {choices}")
        values[name] = _label_value(name, text.strip(), fields[name].type)
    try:
        return dataclasses.replace(base, **values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"label settings: {exc}") from exc


def _label_value(name: str, text: str, annotation: object) -> object:
    if annotation in (bool, "bool"):
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"--label {name}={text!r}: expected true or false")
        return lowered in ("true", "1", "yes")
    try:
        value = int(text) if annotation in (int, "int") else float(text)
    except ValueError:
        raise ConfigError(f"--label {name}={text!r}: expected a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"--label {name}={text!r}: expected a finite number")
    return value


def is_skip(event: InteractionEvent, config: LabelConfig) -> bool:
    ratio = event.dwell_ratio
    if ratio is None:
        return event.dwell_seconds < config.skip_seconds
    return ratio < config.skip_ratio


def is_long_dwell(event: InteractionEvent, config: LabelConfig) -> bool:
    ratio = event.dwell_ratio
    if ratio is None:
        return event.dwell_seconds >= config.long_dwell_seconds
    return ratio >= config.long_dwell_ratio


def is_negative_feedback(event: InteractionEvent, config: LabelConfig) -> bool:
    """An explicit negative: the dislike flag the model sees in its input."""
    return event.disliked or (config.dismiss_is_dislike and event.dismissed)


def label_event(event: InteractionEvent, config: LabelConfig) -> tuple[LabelKind, float] | None:
    """The label kind and weight of an event, or None for an unlabelled one."""
    if is_negative_feedback(event, config):
        return "dislike", config.dislike_weight
    if event.liked:
        return "positive", config.like_weight
    if is_long_dwell(event, config):
        return "positive", config.positive_weight
    if is_skip(event, config):
        return "skip", config.skip_weight
    return None


def is_positive(event: InteractionEvent, config: LabelConfig) -> bool:
    """The event is a positive label (a like or a long dwell, and no dislike)."""
    label = label_event(event, config)
    return label is not None and label[0] == "positive"


# Ratio edges between buckets 1..NUM_DWELL_BUCKETS-1 (bucket 0 is a skip).
_RATIO_EDGES = (0.25, 0.5, 0.8, 1.0)
_SECONDS_EDGES = (5.0, 10.0, 20.0, 40.0)
assert len(_RATIO_EDGES) == len(_SECONDS_EDGES) == NUM_DWELL_BUCKETS - 2

# Upper edges (seconds) of gap buckets 1..NUM_GAP_BUCKETS-2; bucket 0 means "no previous item".
_GAP_EDGES = (10.0, 60.0, 600.0, 3600.0, 86_400.0, 604_800.0)
assert len(_GAP_EDGES) == NUM_GAP_BUCKETS - 2


def dwell_bucket(event: InteractionEvent, config: LabelConfig) -> int:
    """0 for a skip, then increasing dwell; the last bucket is a full watch or more."""
    if is_skip(event, config):
        return 0
    ratio = event.dwell_ratio
    if ratio is None:
        return 1 + bisect.bisect_right(_SECONDS_EDGES, event.dwell_seconds)
    return 1 + bisect.bisect_right(_RATIO_EDGES, ratio)


def gap_bucket(gap_seconds: float | None) -> int:
    """Log-scale bucket of the time since the previous history item (0 = none)."""
    if gap_seconds is None or math.isnan(gap_seconds):
        return 0
    return 1 + bisect.bisect_right(_GAP_EDGES, max(0.0, gap_seconds))
