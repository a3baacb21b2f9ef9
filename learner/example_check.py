"""Which records of ``training-examples`` the learner may train on: one bad record is
skipped and counted, never a reason to stop.

A record is skipped, with one of ``SKIP_REASONS``, when it is

- ``oversized``: more than ``max_bytes`` bytes (not even decoded), or a history
  of more than ``max_history`` items (the stream workers keep 50 by default);
- ``undecodable``: not UTF-8 JSON of a ``TrainingExample`` (including JSON
  nested too deeply for the decoder, which raises ``RecursionError``);
- ``invalid``: decoded, but a value training cannot take: an id that is not a
  non-empty string, a dwell or gap bucket outside its embedding table (an index
  error mid-step), a label weight that is negative or not finite (a NaN loss
  would poison every weight), a timestamp that is not finite.

Pure: no Kafka, no logging; ``learner.kafka_source`` logs and counts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from monitoring.catalogue import SKIP_REASONS as SKIP_REASONS  # the metric's reason label values
from monitoring.catalogue import SkipReason as SkipReason
from recoil.core.records import NUM_DWELL_BUCKETS, NUM_GAP_BUCKETS, TrainingExample


class Skipped(NamedTuple):
    """Why a record is not trained on."""

    reason: SkipReason
    detail: str


def decode_example(
    value: bytes | None, max_bytes: int, max_history: int
) -> TrainingExample | Skipped:
    """The example in ``value``, or why it must be skipped (see the module docstring)."""
    if value is None:
        return Skipped("undecodable", "empty record value")
    if len(value) > max_bytes:
        return Skipped("oversized", f"{len(value)} bytes, the limit is {max_bytes}")
    try:
        example = TrainingExample.from_json(value)
    except RecursionError:
        return Skipped("undecodable", "JSON nested too deeply")
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        return Skipped("undecodable", f"{type(exc).__name__}: {exc}"[:300])
    if len(example.history) > max_history:
        return Skipped(
            "oversized", f"history of {len(example.history)} items, the limit is {max_history}"
        )
    problem = invalid_reason(example)
    return example if problem is None else Skipped("invalid", problem)


def invalid_reason(example: TrainingExample) -> str | None:
    """What in a decoded example training cannot take, or None."""
    for name in ("event_id", "user_id", "label_item_id", "label_creator_id"):
        if not _nonempty(getattr(example, name)):
            return f"{name} must be a non-empty string"
    if example.label_cluster_id is not None and not isinstance(example.label_cluster_id, str):
        return "label_cluster_id must be a string or null"
    if not math.isfinite(example.label_weight) or example.label_weight < 0:
        return f"label_weight must be finite and >= 0, got {example.label_weight}"
    if not math.isfinite(example.timestamp):
        return "timestamp must be finite"
    for n, item in enumerate(example.history):
        if not (_nonempty(item.item_id) and _nonempty(item.creator_id)):
            return f"history[{n}]: item_id and creator_id must be non-empty strings"
        if item.cluster_id is not None and not isinstance(item.cluster_id, str):
            return f"history[{n}]: cluster_id must be a string or null"
        if not 0 <= item.dwell_bucket < NUM_DWELL_BUCKETS:
            return f"history[{n}]: dwell_bucket {item.dwell_bucket} not in [0, {NUM_DWELL_BUCKETS})"
        if not 0 <= item.gap_bucket < NUM_GAP_BUCKETS:
            return f"history[{n}]: gap_bucket {item.gap_bucket} not in [0, {NUM_GAP_BUCKETS})"
        if not math.isfinite(item.timestamp):
            return f"history[{n}]: timestamp must be finite"
    return None


def _nonempty(value: object) -> bool:
    return isinstance(value, str) and value != ""
