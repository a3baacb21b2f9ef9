"""Data-parallel ranks over Kafka partitions: what the ranks agree on, and how.

``recoil learn --devices N`` runs N ranks (Lightning's ``DDPStrategy``: gloo between
CPU processes, NCCL between GPUs; more nodes through Lightning's usual environment
variables). Each rank reads its own partitions of ``training-examples`` and trains
one replica of the model; DDP averages the gradients. Four things have to hold
for N replicas to stay one model, and this module is where each is done:

* **Partitions.** Rank ``r`` of ``N`` owns partition ``p`` where ``p % N == r``
  (``owned_partitions``), assigned, not subscribed: DDP ranks live and die
  together (a dead rank fails the next all-reduce and ends the job), so a group
  rebalance would buy no failover and would move partitions between ranks in the
  middle of a step. A fixed map also makes restarting with another N trivial: a
  partition's offset does not depend on which rank read it, so the checkpoint holds
  the union and each rank takes the offsets of the partitions it owns now.
* **Vocabulary.** Before a batch is encoded every rank sends the ids its batch
  would add (``new_ids``) and everyone adds all of them in rank order
  (``sync_batch``): item ``x`` gets the same row on every rank, so the tables grow
  to the same size everywhere. Item metadata travels along, so rank 0's snapshots
  know the creator and cluster of items only another rank has seen.
* **Stepping together.** A step is taken when *any* rank has rows; a rank without
  any joins the all-reduce with a zero gradient. Each rank's loss is its batch mean
  scaled by ``N * rows_r / rows_all`` (``loss_scale``), so DDP's average is the
  mean over every rank's rows: N ranks step exactly as one process would on the
  concatenated batch (``tests/functional/test_learner_ddp.py``). The label counts,
  the item -> creator map and the items' feedback counts, buffers all, are updated
  with every rank's rows (``PeerRows``), not with the local ones only.
* **Growing tables under DDP.** DDP sizes its gradient buckets for the parameters'
  shapes at construction and requires them not to change; a grown table gets a new
  ``DistributedDataParallel`` (``ddp_unwrapped``), whose construction also checks that
  every rank's shapes agree and broadcasts rank 0's weights (new rows included).

Checkpoints are collective (Lightning's ``save_checkpoint`` dumps on every rank and
writes on rank 0); ``learner.continuous_loop`` gathers every rank's offsets, lineage
lengths and de-duplication window into rank 0's file (``learner.checkpoint``'s
``StreamCheckpoint``), and only rank 0 publishes.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from lightning.fabric.plugins import TorchCheckpointIO

from learner.features import ExampleTensors
from learner.snapshot import ItemMeta, update_items_meta
from learner.vocab import Vocabularies
from recoil.core.records import TrainingExample

T = TypeVar("T")

LINEAGE_PREFIX = "trained"
# How long a rank waits on quiet partitions before it hands in an empty batch. Every
# step waits for the slowest rank, so a rank whose partitions are quiet would hold the
# busy ones back by the single process's idle tick (1 s) at every step; with all ranks
# quiet they tick this often instead (a few small collectives per tick).
RANK_IDLE_TICK_S = 0.05


@dataclass(frozen=True)
class Ranks:
    """This process's place among the learner's ranks."""

    rank: int = 0  # global rank (node_rank * devices + local_rank)
    world: int = 1  # number of ranks

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} of {self.world} is not a rank")

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def owned_partitions(self, partitions: Iterable[int]) -> list[int]:
        """The partitions this rank reads: ``p % world == rank`` (may be none)."""
        return sorted(p for p in partitions if p % self.world == self.rank)

    def lineage_file(self) -> str:
        """This rank's lineage log: ``trained.jsonl`` for rank 0 (the single-process name)."""
        return lineage_file(self.rank)


ONE_PROCESS = Ranks()


def lineage_file(rank: int) -> str:
    return f"{LINEAGE_PREFIX}.jsonl" if rank == 0 else f"{LINEAGE_PREFIX}.rank{rank}.jsonl"


def lineage_rank(name: str) -> int | None:
    """The rank whose lineage log ``name`` is, or None for other files."""
    if name == f"{LINEAGE_PREFIX}.jsonl":
        return 0
    prefix, suffix = f"{LINEAGE_PREFIX}.rank", ".jsonl"
    middle = name[len(prefix) : -len(suffix)]
    if name.startswith(prefix) and name.endswith(suffix) and middle.isdigit():
        return int(middle)
    return None


def all_gather(obj: T) -> list[T]:
    """``obj`` from every rank, in rank order (``[obj]`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def _dedupe(ids: Iterable[str], known: Any) -> list[str]:
    seen: set[str] = set()
    out = []
    for i in ids:
        if i not in known and i not in seen:
            seen.add(i)
            out.append(i)
    return out


def new_ids(
    examples: Sequence[TrainingExample], vocabs: Vocabularies
) -> tuple[list[str], list[str]]:
    """The item and creator ids ``encode_examples`` would add for ``examples``, in the
    order it would add them, under any arm: whole histories first, then labels."""
    items = [h.item_id for e in examples for h in e.history] + [e.label_item_id for e in examples]
    creators = [h.creator_id for e in examples for h in e.history] + [
        e.label_creator_id for e in examples
    ]
    return _dedupe(items, vocabs.items), _dedupe(creators, vocabs.creators)


def sync_batch(
    examples: Sequence[TrainingExample],
    vocabs: Vocabularies,
    items_meta: dict[str, ItemMeta],
) -> None:
    """Add every rank's new ids to ``vocabs`` in rank order, and every rank's item
    metadata to ``items_meta`` (collective: every rank calls it once per batch)."""
    items, creators = new_ids(examples, vocabs)
    meta: dict[str, ItemMeta] = {}
    update_items_meta(meta, examples)
    for rank_items, rank_creators, rank_meta in all_gather((items, creators, meta)):
        vocabs.items.add(rank_items)
        vocabs.creators.add(rank_creators)
        items_meta.update(rank_meta)


@dataclass(frozen=True)
class PeerRows:
    """What the other ranks' batches hold that the model's buffers record: their label
    and history (item, creator) rows, and which labels are not-to-recommend. ``rows``
    counts every rank's rows, own included."""

    rows: tuple[int, ...]  # rows per rank
    label: np.ndarray  # (L,) int64 label item rows of the other ranks
    label_creator: np.ndarray  # (L,)
    history_item: np.ndarray  # (H,) int64 real (unmasked) history item rows
    history_creator: np.ndarray  # (H,)
    label_negative: np.ndarray  # (L,) int64, 1 where the label is not-to-recommend

    @property
    def total(self) -> int:
        return sum(self.rows)


_Observed = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _observed(examples: ExampleTensors | None) -> _Observed:
    if examples is None:
        empty = np.zeros(0, dtype=np.int64)
        return 0, empty, empty, empty, empty, empty
    history = examples.history
    mask = history.mask
    return (
        examples.num_examples,
        examples.label.numpy(),
        examples.label_creator.numpy(),
        history.item[mask].long().numpy(),
        history.creator[mask].long().numpy(),
        examples.is_negative.long().numpy(),
    )


def gather_rows(examples: ExampleTensors | None, ranks: Ranks) -> PeerRows:
    """Every rank's row count and the other ranks' observations (collective)."""
    gathered = all_gather(_observed(examples))
    others = [g for r, g in enumerate(gathered) if r != ranks.rank]

    def cat(k: int) -> np.ndarray:
        return np.concatenate([g[k] for g in others]) if others else np.zeros(0, np.int64)

    return PeerRows(tuple(int(g[0]) for g in gathered), cat(1), cat(2), cat(3), cat(4), cat(5))


def loss_scale(own_rows: int, peers: PeerRows | None) -> float:
    """``N * rows_r / rows_all``: DDP averages gradients over N ranks, and each rank's
    loss is a mean over its own rows; scaled so, the average is the mean over all rows."""
    if peers is None or peers.total == 0:
        return 1.0
    return len(peers.rows) * own_rows / peers.total


@contextmanager
def ddp_unwrapped(strategy: Any) -> Iterator[None]:
    """Grow the model's tables inside this: the model leaves its
    ``DistributedDataParallel`` before, and gets a new one after.

    DDP builds its gradient buckets for the parameters' shapes at construction, and its
    reducer holds each parameter's gradient accumulator, which remembers the shape it
    had: a table grown under a live reducer fails its next backward ("invalid gradient
    ... expected shape compatible with [old rows, D]"). Lightning wraps once, in
    ``DDPStrategy.setup``; this drops that wrapper (and its reducer) and wraps again
    through the strategy's own ``_setup_model`` (same device ids, same DDP arguments),
    whose construction checks that every rank's shapes agree and broadcasts rank 0's
    parameters, new rows included. The only place recoil touches Lightning's DDP
    internals. Without a wrapper (one process) it does nothing.
    """
    from torch.nn.parallel import DistributedDataParallel

    wrapped = getattr(strategy, "model", None)
    if not isinstance(wrapped, DistributedDataParallel):
        yield
        return
    inner = wrapped.module
    strategy.model = inner
    del wrapped
    gc.collect()  # the reducer must be gone before a shape changes (see above)
    try:
        yield
    finally:
        strategy.model = strategy._setup_model(inner)


class DeferredFailureCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, keeping a failed write for after the barrier.

    ``Trainer.save_checkpoint`` writes on rank 0 and then waits in a barrier every rank
    joins; a write that raised would take rank 0 past its barrier and leave the other
    ranks waiting there until the process group times out. The failure is kept instead
    and raised by ``raise_failure`` once every rank is past the barrier."""

    failure: Exception | None = None

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        try:
            super().save_checkpoint(checkpoint, path, storage_options)
        except Exception as exc:  # raised after the barrier, on every rank
            self.failure = exc

    def raise_failure(self) -> None:
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure


def ddp_strategy(process_group_backend: str | None = None) -> Any:
    """The DDP strategy for N ranks: unused parameters allowed (a batch without a
    disliked item leaves the gate and push out of the graph), and buffers not
    broadcast from rank 0 at each forward (each rank updates them with every rank's
    rows itself, ``PeerRows``; a broadcast would drop the other ranks' updates)."""
    import inspect

    from lightning.pytorch.strategies import DDPStrategy
    from torch.nn.parallel import DistributedDataParallel

    # Newer torch renames the switch (and deprecates the old name); both keep the
    # construction-time sync, which is harmless here: the buffers agree at every wrap.
    known = inspect.signature(DistributedDataParallel.__init__).parameters
    buffers = "forward_sync_buffers" if "forward_sync_buffers" in known else "broadcast_buffers"
    ddp_kwargs: dict[str, Any] = {buffers: False}
    return DDPStrategy(
        find_unused_parameters=True,
        process_group_backend=process_group_backend,
        checkpoint_io=DeferredFailureCheckpointIO(),
        **ddp_kwargs,
    )


def zero_loss(module: torch.nn.Module) -> torch.Tensor:
    """A loss of exactly 0 that touches every parameter: a rank without rows joins the
    all-reduce with a zero gradient for each of them."""
    return torch.stack([p.sum() for p in module.parameters()]).sum() * 0.0
