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

Speed (``ExampleDecoder``, what the learner uses): every example carries its
user's whole history (50 items), and a user's consecutive examples share all but
one of them. ``decode_example`` builds and checks 50 ``HistoryItem`` objects per
record (~85% of its time); the decoder parses with orjson and keeps the items it
has built and checked in a bounded cache keyed by the row's values, so a
record costs one parse and 50 dictionary look-ups. Shared items are also shared
objects, which ``learner.features`` deduplicates by identity. Any record the
fast path does not take as it is (a parse error, a missing field, a value that
fails a check) goes through ``decode_example``, so the reason and detail of a
skip are the same either way.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import orjson

from monitoring.catalogue import SKIP_REASONS as SKIP_REASONS  # the metric's reason label values
from monitoring.catalogue import SkipReason as SkipReason
from recoil.core.checks import utf8_error
from recoil.core.records import (
    LABEL_KINDS,
    NUM_DWELL_BUCKETS,
    NUM_GAP_BUCKETS,
    HistoryItem,
    TrainingExample,
)


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
    problem = _label_problem(example)
    if problem is not None:
        return problem
    for n, item in enumerate(example.history):
        problem = _item_problem(n, item)
        if problem is not None:
            return problem
    return None


def _label_problem(example: TrainingExample) -> str | None:
    """What training cannot take in the example's own fields (not its history), or None."""
    for name in ("event_id", "user_id", "label_item_id", "label_creator_id"):
        if not _nonempty(getattr(example, name)):
            return f"{name} must be a non-empty UTF-8 string"
    if example.label_cluster_id is not None and not _text(example.label_cluster_id):
        return "label_cluster_id must be a UTF-8 string or null"
    if not math.isfinite(example.label_weight) or example.label_weight < 0:
        return f"label_weight must be finite and >= 0, got {example.label_weight}"
    if not math.isfinite(example.timestamp):
        return "timestamp must be finite"
    return None


def _item_problem(n: int, item: HistoryItem) -> str | None:
    """What training cannot take in history item ``n``, or None."""
    if not (_nonempty(item.item_id) and _nonempty(item.creator_id)):
        return f"history[{n}]: item_id and creator_id must be non-empty UTF-8 strings"
    if item.cluster_id is not None and not _text(item.cluster_id):
        return f"history[{n}]: cluster_id must be a UTF-8 string or null"
    if not 0 <= item.dwell_bucket < NUM_DWELL_BUCKETS:
        return f"history[{n}]: dwell_bucket {item.dwell_bucket} not in [0, {NUM_DWELL_BUCKETS})"
    if not 0 <= item.gap_bucket < NUM_GAP_BUCKETS:
        return f"history[{n}]: gap_bucket {item.gap_bucket} not in [0, {NUM_GAP_BUCKETS})"
    if not math.isfinite(item.timestamp):
        return f"history[{n}]: timestamp must be finite"
    return None


class ExampleDecoder:
    """``decode_example`` with orjson and a cache of checked history items (see the
    module docstring); same results, same skips. One thread only."""

    def __init__(self, max_bytes: int, max_history: int, cache_items: int = 1 << 18) -> None:
        self.max_bytes = max_bytes
        self.max_history = max_history
        # row values -> the item built from them, checked; emptied when full (a user's
        # 50 items of a few thousand users fit, so most rows hit)
        self.cache_items = cache_items
        self._items: dict[tuple[Any, ...], HistoryItem] = {}

    def __call__(self, value: bytes | None) -> TrainingExample | Skipped:
        if value is None or len(value) > self.max_bytes:
            return decode_example(value, self.max_bytes, self.max_history)
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:  # also NaN and Infinity, which json reads
            return decode_example(value, self.max_bytes, self.max_history)
        example = self._fast(obj)
        if example is None:  # the reference path says what is wrong (or takes it)
            return decode_example(value, self.max_bytes, self.max_history)
        return example

    def _fast(self, obj: Any) -> TrainingExample | None:
        """The example, if every field is as the workers write it; None for anything else."""
        try:
            rows = obj["history"]
            if type(rows) is not list or len(rows) > self.max_history:
                return None
            cache = self._items
            history: list[HistoryItem | None] = list(map(cache.get, map(tuple, rows)))
            if not all(history):  # a miss: build, check and keep the new items
                for n, row in enumerate(rows):
                    if history[n] is None:
                        if type(row) is not list or len(row) != 7:
                            return None
                        item = HistoryItem.from_row(row)
                        if _item_problem(n, item) is not None:
                            return None
                        if len(cache) >= self.cache_items:
                            cache.clear()
                        history[n] = cache[tuple(row)] = item
            kind = obj["label_kind"]
            if kind not in LABEL_KINDS:
                return None
            example = TrainingExample(
                event_id=obj["event_id"],
                user_id=obj["user_id"],
                timestamp=float(obj["timestamp"]),
                history=tuple(history),  # type: ignore[arg-type]  # no None left
                label_item_id=obj["label_item_id"],
                label_creator_id=obj["label_creator_id"],
                label_cluster_id=obj["label_cluster_id"],
                label_kind=kind,
                label_weight=float(obj["label_weight"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError):
            return None
        return example if _label_problem(example) is None else None


def _nonempty(value: object) -> bool:
    return _text(value) and value != ""


def _text(value: object) -> bool:
    """A string that is UTF-8 text (no lone surrogate: ``recoil.core.checks``), as the
    worker writes every id (``recoil.core.events`` rejects the others)."""
    return isinstance(value, str) and utf8_error(value) is None
