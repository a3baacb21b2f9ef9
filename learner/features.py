"""Histories and training examples as tensors, with each arm's input transform.

Layout: histories are **left-aligned**. Slot 0 holds the oldest kept item,
slot ``length-1`` the most recent, and slots ``length..max_len-1`` are padding
(``PAD_INDEX``, all features 0, ``mask`` False). Causal encoders (GRU, causal
transformer) read the user state at slot ``length-1``, where padding that comes
*after* it cannot leak in, so a history encodes identically whatever ``max_len``
it is padded to. Only the newest ``max_len`` items are kept.

Arms (see ``learner.arms``) change the input before truncation: the
``exclude_heuristic`` arm removes disliked items and then keeps the newest
``max_len`` of what remains; arms without the dislike feature see flag 0 and
the newest ``max_len`` items. Arms *with* the dislike feature get the whole
history: the model reads the newest ``max_len`` items, and (``flagged_input``
"gated"/"drop") also the newest ``max_len`` unflagged ones, which can reach
further back, exactly as the heuristic's window does. The same transform runs
at training (``encode_examples``) and serving (``encode_histories``) time.

Speed: consecutive windows of one user share their ``HistoryItem`` objects
(``recoil.core.windows`` appends to a tuple), so items are deduplicated by object
identity and only the distinct ones are read in Python; the rest is numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from learner.arms import ArmConfig, resolve_arm
from learner.vocab import PAD_INDEX, UNKNOWN_INDEX, Vocabularies
from recoil.core.records import NUM_DWELL_BUCKETS, NUM_GAP_BUCKETS, HistoryItem, TrainingExample


def _rows(index: Tensor | np.ndarray | slice) -> Tensor | slice:
    """``index`` as tensors take it (a numpy array becomes a tensor)."""
    return torch.from_numpy(index) if isinstance(index, np.ndarray) else index


class HistoryBatch(NamedTuple):
    """A padded batch of histories; every field is (B, T): T = max_len, or the longest
    history for arms with the dislike feature (see the module docstring)."""

    item: Tensor  # (B, T) int32 item index, PAD_INDEX in empty slots
    creator: Tensor  # (B, T) int32 creator index, PAD_INDEX in empty slots
    disliked: Tensor  # (B, T) uint8 dislike flag (0 when the arm hides it)
    dwell: Tensor  # (B, T) uint8 dwell bucket, 0 = skip (and padding)
    gap: Tensor  # (B, T) uint8 time-gap bucket, 0 = no previous item (and padding)
    mask: Tensor  # (B, T) bool, True on the real items in slots [0, length)

    @property
    def lengths(self) -> Tensor:
        """(B,) number of real items per history."""
        return self.mask.sum(dim=1)

    @property
    def batch_size(self) -> int:
        return int(self.item.shape[0])

    def select(self, index: Tensor | np.ndarray | slice) -> HistoryBatch:
        """The histories at ``index`` (rows)."""
        rows = _rows(index)
        return HistoryBatch(*(t[rows] for t in self))

    def to(self, device: torch.device | str) -> HistoryBatch:
        return HistoryBatch(*(t.to(device, non_blocking=True) for t in self))


class ExampleTensors(NamedTuple):
    """Encoded training examples: inputs, labels and where each row came from."""

    history: HistoryBatch  # (B, T) fields
    label: Tensor  # (B,) int64 label item index (>= FIRST_INDEX)
    weight: Tensor  # (B,) float32 label weight: r for positives, w for negatives
    is_negative: Tensor  # (B,) bool, True for not-to-recommend labels (dislike, skip)
    source: Tensor  # (B,) int64 position of each row in the encoded example sequence
    label_creator: Tensor  # (B,) int64 creator index of the label item

    @property
    def num_examples(self) -> int:
        return int(self.label.shape[0])

    def select(self, index: Tensor | np.ndarray | slice) -> ExampleTensors:
        """The rows at ``index``: a minibatch."""
        rows = _rows(index)
        return ExampleTensors(self.history.select(rows), *(t[rows] for t in self[1:]))

    def to(self, device: torch.device | str) -> ExampleTensors:
        return ExampleTensors(
            self.history.to(device),
            *(t.to(device, non_blocking=True) for t in self[1:]),
        )


class _Flat(NamedTuple):
    """Histories as one flat sequence of rows into a table of distinct items."""

    rows: np.ndarray  # (total,) int64 row of each history item in the tables below
    lengths: np.ndarray  # (B,) int64 items per history
    item: np.ndarray  # (U+1,) int64 item index per distinct item; last row = padding
    creator: np.ndarray  # (U+1,) int64
    disliked: np.ndarray  # (U+1,) bool
    dwell: np.ndarray  # (U+1,) uint8
    gap: np.ndarray  # (U+1,) uint8


def _flatten(
    histories: Sequence[Sequence[HistoryItem]],
    vocabs: Vocabularies,
    keep_last: int | None,
    grow: bool,
) -> _Flat:
    """Deduplicate history items by identity and look their ids up (adding them if
    ``grow``, in order of first appearance, so vocabularies are deterministic)."""
    objects: list[HistoryItem] = []
    lengths = np.empty(len(histories), dtype=np.int64)
    for b, history in enumerate(histories):
        tail = history[-keep_last:] if keep_last is not None else history
        objects.extend(tail)
        lengths[b] = len(tail)
    keys = np.fromiter(map(id, objects), dtype=np.uint64, count=len(objects))
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # distinct items in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    rows = rank[inverse.reshape(-1)]
    distinct = [objects[i] for i in first[order]]

    item_ids = [h.item_id for h in distinct]
    creator_ids = [h.creator_id for h in distinct]
    if grow:
        vocabs.items.add(item_ids)
        vocabs.creators.add(creator_ids)
    n = len(distinct)
    dwell = np.fromiter((h.dwell_bucket for h in distinct), dtype=np.int64, count=n)
    gap = np.fromiter((h.gap_bucket for h in distinct), dtype=np.int64, count=n)
    _check_range("dwell_bucket", dwell, NUM_DWELL_BUCKETS, distinct)
    _check_range("gap_bucket", gap, NUM_GAP_BUCKETS, distinct)
    pad = np.zeros(1, dtype=np.int64)
    return _Flat(
        rows=rows,
        lengths=lengths,
        item=np.concatenate([vocabs.items.lookup(item_ids), pad + PAD_INDEX]),
        creator=np.concatenate([vocabs.creators.lookup(creator_ids), pad + PAD_INDEX]),
        disliked=np.concatenate(
            [np.fromiter((h.disliked for h in distinct), dtype=bool, count=n), pad.astype(bool)]
        ),
        dwell=np.concatenate([dwell, pad]).astype(np.uint8),
        gap=np.concatenate([gap, pad]).astype(np.uint8),
    )


def _check_range(name: str, values: np.ndarray, size: int, items: list[HistoryItem]) -> None:
    bad = np.flatnonzero((values < 0) | (values >= size))
    if len(bad):
        raise ValueError(
            f"history item {items[bad[0]]!r} has {name} {values[bad[0]]}, "
            f"outside 0..{size - 1}; check the labelling config that produced it"
        )


def _layout(flat: _Flat, which: np.ndarray | None, max_len: int, arm: ArmConfig) -> HistoryBatch:
    """Left-aligned (B, max_len) tensors for the histories ``which`` (all if None)."""
    lengths = flat.lengths
    example = np.repeat(np.arange(len(lengths)), lengths)  # (total,) history of each row
    rows = flat.rows
    if which is not None:  # keep only the selected histories, renumbered 0..len(which)-1
        renumber = np.full(len(lengths), -1, dtype=np.int64)
        renumber[which] = np.arange(len(which))
        example = renumber[example]
        chosen = example >= 0
        rows, example = rows[chosen], example[chosen]
    num = len(lengths) if which is None else len(which)
    if arm.exclude_disliked:
        kept = ~flat.disliked[rows]
        rows, example = rows[kept], example[kept]
    lengths = np.bincount(example, minlength=num)
    if arm.dislike_feature:  # the whole history: the model picks its windows from it
        max_len = max(max_len, int(lengths.max()) if num else 0)
    starts = np.cumsum(lengths) - lengths
    position = np.arange(len(rows)) - starts[example]  # 0 = oldest item of its history
    column = position - np.maximum(lengths - max_len, 0)[example]  # oldest overflow < 0
    fits = column >= 0
    pad_row = len(flat.item) - 1
    slots = np.full((num, max_len), pad_row, dtype=np.int64)
    slots[example[fits], column[fits]] = rows[fits]

    disliked = flat.disliked[slots] if arm.dislike_feature else np.zeros(slots.shape, bool)
    return HistoryBatch(
        item=torch.from_numpy(flat.item[slots].astype(np.int32)),
        creator=torch.from_numpy(flat.creator[slots].astype(np.int32)),
        disliked=torch.from_numpy(disliked.astype(np.uint8)),
        dwell=torch.from_numpy(flat.dwell[slots]),
        gap=torch.from_numpy(flat.gap[slots]),
        mask=torch.from_numpy(slots != pad_row),
    )


def _keep_last(arm: ArmConfig, max_len: int) -> int | None:
    """How much of each history the arm's encoding reads: all of it where items are
    removed (exclude) or may be by the model (the dislike feature), else ``max_len``."""
    return None if arm.exclude_disliked or arm.dislike_feature else max_len


def _check_max_len(max_len: int) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")


def encode_histories(
    histories: Sequence[Sequence[HistoryItem]],
    vocabs: Vocabularies,
    max_len: int,
    arm: str | ArmConfig,
) -> HistoryBatch:
    """Serving-time encoding: histories (oldest first) -> a left-aligned batch.

    Vocabularies are not grown; ids they do not hold become ``UNKNOWN_INDEX``.
    """
    _check_max_len(max_len)
    arm = resolve_arm(arm)
    flat = _flatten(histories, vocabs, _keep_last(arm, max_len), grow=False)
    return _layout(flat, None, max_len, arm)


_KIND_CODE = {"positive": 0, "dislike": 1, "skip": 2}


def encode_examples(
    examples: Sequence[TrainingExample],
    vocabs: Vocabularies,
    max_len: int,
    arm: str | ArmConfig,
    grow: bool = True,
) -> ExampleTensors:
    """Training-time encoding of examples under an arm.

    With ``grow`` every item and creator id of every example (kept or not, so
    all arms share one item universe) is added to ``vocabs`` first. Then the
    arm picks the labels (``arm.trained_kinds``): positives always, dislikes if
    ``arm.dislike_labels``, skips if ``arm.skip_labels``; other examples are
    dropped. Without ``grow``, examples whose label item is unknown are dropped
    too (nothing to score).
    ``source`` tells which input positions survived.
    """
    _check_max_len(max_len)
    arm = resolve_arm(arm)
    kind = np.fromiter(
        (_KIND_CODE[e.label_kind] for e in examples), dtype=np.int64, count=len(examples)
    )
    label_ids = [e.label_item_id for e in examples]
    label_creator_ids = [e.label_creator_id for e in examples]
    if grow:
        histories = [e.history for e in examples]
        # Every arm grows the vocabularies from whole histories, then the labels, so on
        # the same examples every arm numbers the items alike, and the same seed gives an
        # item the same initial rows in every arm: arms differ by what they read and
        # learn, not by which item drew which row (an arm that reads the newest max_len
        # alone numbered the items in another order, and its comparison with the others
        # carried that draw).
        # (_layout keeps the newest max_len of an arm that reads no more)
        flat = _flatten(histories, vocabs, None, grow=True)
        vocabs.items.add(label_ids)
        vocabs.creators.add(label_creator_ids)
    label = vocabs.items.lookup(label_ids)
    label_creator = vocabs.creators.lookup(label_creator_ids)
    wanted = np.isin(kind, [_KIND_CODE[k] for k in arm.trained_kinds])
    wanted &= label != UNKNOWN_INDEX
    which = np.flatnonzero(wanted)
    if grow:
        history = _layout(flat, which, max_len, arm)
    else:  # only the kept examples need their histories read
        kept = which.tolist()
        history = encode_histories([examples[i].history for i in kept], vocabs, max_len, arm)
    weight = np.fromiter((examples[i].label_weight for i in which.tolist()), np.float32, len(which))
    if len(weight) and (weight.min() < 0 or not np.isfinite(weight).all()):
        raise ValueError("label weights must be finite and >= 0")
    return ExampleTensors(
        history=history,
        label=torch.from_numpy(label[which]),
        weight=torch.from_numpy(weight),
        is_negative=torch.from_numpy(kind[which] != 0),
        source=torch.from_numpy(which.astype(np.int64)),
        label_creator=torch.from_numpy(label_creator[which]),
    )
