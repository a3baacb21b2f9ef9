"""The continuous learner: Lightning fine-tuning on ``training-examples`` as they arrive.

Data path: ``KafkaExampleSource`` (mini-batches with their end offsets) ->
``StreamDataset`` (an endless ``IterableDataset``: encodes each batch under the
arm, growing the vocabularies) -> ``ContinuousModule`` (the learner's
``RecommenderModule`` with manual optimization) -> ``ContinuousLoop`` (a
callback: commits offsets, logs lineage, checkpoints, publishes snapshots,
exports metrics, stops).

Lightning and an endless stream: ``max_epochs=-1``, an epoch never ends, and
everything periodic is counted in integer optimizer steps or seconds, never in
fractions of an epoch (Lightning #698, #1141). Batches with nothing to train
(the topic is idle, or the arm dropped every label) reach the loop as "ticks":
the module takes no optimizer step for them (so ``global_step`` counts real
steps only) while the callback still commits, reports, publishes on time and
stops when asked. Lightning fetches one batch ahead; offsets, event ids and
vocabulary sizes therefore travel *with* each batch, never read from the source.

New items without restart (a growable table, not hashing): ids that first
appear in a batch get the next vocabulary index while the batch is encoded;
before that batch's step the model's item and creator tables are extended in
place (``SequenceRecommender.grow_items``: trained rows kept, new rows
initialised) and the optimizer's moments zero-padded, so training continues
with the same optimizer. Snapshots publish only rows the model has.

Exactly-once training across restarts: after each step the callback commits the
batch's offsets, and appends ``{"step", "event_ids", "offsets", "rows"}`` to
``<checkpoint_dir>/trained.jsonl``. A checkpoint (``last.ckpt``, written just
before every snapshot and on a clean stop; tmp file + ``os.replace``) stores
the offsets, vocabularies, item metadata, the de-duplication window and the
length of ``trained.jsonl`` at that moment (``learner.checkpoint``). A restart
loads it, truncates ``trained.jsonl`` back to that length (the cut tail goes to
``rolled_back.jsonl``: work the checkpointed model never saw), and seeks every
partition to the checkpoint's offsets. ``trained.jsonl`` is thus always the
lineage of the current model: each event id in it exactly once. Without a
checkpoint the learner starts a new model on everything the topic retains
(the group's committed offsets are for monitoring lag; the checkpoint's
offsets are the truth), so a crash before the first checkpoint loses nothing.

Snapshot versions come from the store (one above the newest there), so they
strictly increase across restarts as well.

Scale: one learner *job* per consumer group and store. With ``devices=1`` it is
one process, subscribed with static membership (``SourceConfig.instance_id``
makes a second one fence the first). With ``devices * num_nodes = N > 1`` it is
N data-parallel ranks (Lightning's ``DDPStrategy``; ``learner.distributed`` has
the design): rank ``r`` is assigned the partitions ``p % N == r``, keeps its own
lineage log (``trained.jsonl`` for rank 0, ``trained.rank<r>.jsonl`` for the
others), and the checkpoint holds every rank's offsets and lineage lengths, so
a restart with any N resumes every partition where the model left it. Only
rank 0 publishes and announces snapshots. Lightning's subprocess launcher starts
ranks 1..N-1 by re-running the command line, each then building its own
consumer; on several nodes (or under torchrun) the environment gives every
process its rank and Lightning launches nothing. The checkpoint directory and
the store must then be shared by the nodes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader

from learner.arms import resolve_arm
from learner.checkpoint import (
    CHECKPOINT_FILE,
    LINEAGE_FILE,
    ROLLED_BACK_FILE,
    ResumeState,
    StreamCheckpoint,
    check_resumable,
    read_resume_state,
)
from learner.continuous_loop import ContinuousLoop, LearnerConfig, LearnerResult
from learner.distributed import (
    RANK_IDLE_TICK_S,
    Ranks,
    ddp_strategy,
    lineage_file,
    lineage_rank,
)
from learner.kafka_source import (
    KafkaExampleSource,
    SourceConfig,
    make_consumer,
    topic_partitions,
)
from learner.metrics import LearnerMetrics
from learner.quiet import quiet_lightning
from learner.snapshot_publish import kafka_announcer
from learner.stream_training import ContinuousModule, StreamDataset, StreamState, no_collate
from learner.vocab import Vocabularies
from recoil.core.errors import ConfigError
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.records import LABEL_KINDS
from recoil.core.settings import differing_settings
from recoil.core.topics import ensure_topics

__all__ = [
    "LearnerConfig", "LearnerResult", "ResumeState", "SourceConfig", "StreamCheckpoint",
    "read_resume_state",
    "rollback_lineage", "run_learner",
]  # fmt: skip

log = logging.getLogger(__name__)

# Resuming mid-epoch, Lightning warns that the stream's loader is not resumable: the
# checkpoint's Kafka offsets resume it instead.
_NOT_RESUMABLE = ".*not resumable.*"


def rollback_lineage(checkpoint_dir: Path, length: int, name: str = LINEAGE_FILE) -> int:
    """Cut the lineage log ``name`` back to ``length`` bytes (the checkpoint's lineage),
    moving the cut entries to its rolled-back file (``rolled_back.jsonl`` for
    ``trained.jsonl``); returns how many entries were cut."""
    path = checkpoint_dir / name
    if not path.exists():
        if length:
            log.warning("%s is missing; the lineage before this run is lost", path)
        return 0
    size = path.stat().st_size
    if size < length:
        log.warning("%s is shorter than the checkpoint says (%d < %d)", path, size, length)
        return 0
    with path.open("rb") as f:
        f.seek(length)
        tail = f.read()
    if tail:
        rolled_back = ROLLED_BACK_FILE.replace("jsonl", name.removeprefix("trained."))
        with (checkpoint_dir / rolled_back).open("ab") as f:
            f.write(tail)
        os.truncate(path, length)
    return tail.count(b"\n")


def _new_module(config: LearnerConfig) -> ContinuousModule:
    L.seed_everything(config.seed, verbose=False)
    return cast(
        ContinuousModule,
        ContinuousModule.from_config(
            config.model, lr=config.lr, weight_decay=config.weight_decay,
            softmax=config.softmax, num_sampled=config.num_sampled, sampler_seed=config.seed,
            dislike_lr_scale=config.dislike_lr_scale,
        ),
    )  # fmt: skip


def run_learner(
    settings: KafkaSettings,
    config: LearnerConfig,
    source_config: SourceConfig,
    metrics: LearnerMetrics,
    stop: threading.Event | None = None,
) -> LearnerResult:
    """Train from ``source_config.topic`` until ``stop`` is set, ``max_steps`` is reached,
    the stream stays idle ``stop_when_idle_s``, or SIGTERM; resumes from ``last.ckpt``."""
    arm = resolve_arm(config.arm)
    checkpoint = config.checkpoint_dir / CHECKPOINT_FILE
    resume = read_resume_state(checkpoint) if checkpoint.exists() else None
    with quiet_lightning(_NOT_RESUMABLE):
        trainer = _trainer(config)  # knows this process's rank before anything reads Kafka
    ranks = Ranks(trainer.global_rank, trainer.world_size)
    result = LearnerResult(rank=ranks.rank)
    saved: StreamCheckpoint | None = None  # the stream's part of the checkpoint
    if resume is not None:
        saved = resume.stream
        if saved.arm != arm.name or saved.topic != source_config.topic:
            raise ConfigError(
                f"{checkpoint} was trained with arm {saved.arm!r} on topic {saved.topic!r}; "
                f"pass --arm {saved.arm} --topic {saved.topic}, or another --checkpoint-dir"
            )
        try:
            module = ContinuousModule(**resume.hparams)
        except (TypeError, ValueError) as exc:  # another module's arguments, or damaged ones
            raise ConfigError(
                f"{checkpoint}: its hyper_parameters do not make the learner's model ({exc}); "
                "point --checkpoint-dir at an empty directory or one the learner wrote"
            ) from None
        check_resumable(module, resume.weights, checkpoint)
        kept = differing_settings(module.model.config, config.model)
        if kept:  # a checkpoint's model keeps its shape: say so rather than ignore the flags
            log.warning(
                "%s keeps its own model settings, not the ones given: %s (another "
                "--checkpoint-dir starts a new model with them)", checkpoint, "; ".join(kept),
            )  # fmt: skip
        cut = _rollback_lineages(config.checkpoint_dir, saved.lineage_files, ranks)
        result.resumed_from_step = resume.step
        log.info(
            "resuming from %s: step %d, offsets %s, %d items (%d lineage entries rolled back)",
            checkpoint, resume.step, saved.offsets, len(saved.vocab_items), cut,
        )  # fmt: skip
        state = StreamState(saved.vocabularies(), dict(saved.items_meta))
    else:
        module = _new_module(config)
        state = StreamState(Vocabularies(), {})
        # A lineage without its checkpoint describes a model that is gone.
        cut = _rollback_lineages(config.checkpoint_dir, {}, ranks)
        log.info(
            "starting a new model on everything %s retains (no checkpoint in %s%s)",
            source_config.topic, config.checkpoint_dir,
            f"; {cut} orphaned lineage entries moved aside" if cut else "",
        )  # fmt: skip
    module.gradient_clip_val = config.gradient_clip_val
    topics = [source_config.topic]
    if config.model_updates_topic:
        topics.append(config.model_updates_topic)
    if ranks.rank == 0:  # one creator: ranks started together would race to create them
        ensure_topics(settings, topics)
    offsets = dict(saved.offsets) if saved else {}
    partitions = None
    if ranks.distributed:  # assigned, not subscribed (learner.distributed says why)
        idle_tick = min(source_config.idle_tick_s, RANK_IDLE_TICK_S)
        source_config = dataclasses.replace(source_config, instance_id=None, idle_tick_s=idle_tick)
        consumer = make_consumer(settings, source_config)
        partitions = ranks.owned_partitions(topic_partitions(consumer, source_config.topic))
        offsets = {p: o for p, o in offsets.items() if p in partitions}
        log.info("rank %d of %d: partitions %s", ranks.rank, ranks.world, partitions)
    else:
        consumer = make_consumer(settings, source_config)
    source = KafkaExampleSource(
        consumer, source_config, offsets, saved.seen_ids if saved else (),
        from_beginning=saved is None, partitions=partitions,
        label_only=set(LABEL_KINDS) - arm.trained_kinds,
    )  # fmt: skip
    producer = None
    announce = None
    if config.model_updates_topic and trainer.is_global_zero:  # rank 0 announces
        from kafka import KafkaProducer

        producer = KafkaProducer(**settings.kafka_python(), acks="all")
        announce = kafka_announcer(producer, config.model_updates_topic)
    stop_event = stop or threading.Event()
    dataset = StreamDataset(
        source, state, arm, module.model.config.max_len, stop_event.is_set, ranks
    )
    # rank 0 carries the count of the checkpoint's lineage; each rank adds its own
    examples = saved.examples_total if saved and ranks.rank == 0 else 0
    loop = ContinuousLoop(
        config, source, state, metrics, result, offsets, examples,
        source_config.topic, stop_event.is_set, announce, ranks,
        # logs of ranks this run lacks: no longer written, still the model's lineage
        {n: b for n, b in saved.lineage_files.items() if _retired(n, ranks)} if saved else {},
    )  # fmt: skip
    trainer.callbacks.append(loop)  # type: ignore[attr-defined]  # set by Trainer.__init__
    log.info("training on %s (rank %d of %d), precision %s", trainer.strategy.root_device,
             ranks.rank, ranks.world, trainer.precision)  # fmt: skip
    # One process, one thread for Kafka: no loader workers. Batches come whole.
    loader = DataLoader(dataset, batch_size=None, collate_fn=no_collate, num_workers=0)
    try:
        with quiet_lightning(_NOT_RESUMABLE), frozen_heap():
            trainer.fit(module, loader, ckpt_path=checkpoint if resume else None, weights_only=True)
    except SIGTERMException:
        log.info("stopped by SIGTERM after a final checkpoint")
    finally:
        source.close()
        if producer is not None:
            producer.close()
    return result


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Leave what exists now (torch, Lightning, the model: ~400k objects) out of the
    cyclic garbage collector's full passes while training: decoding allocates enough
    containers to run one every few batches, and each walked the whole heap (0.4 of
    every 5 s of training; 0.1 frozen, ``bench.learner_profile``). Unfrozen after, so
    that exit cleans up as usual."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _rollback_lineages(checkpoint_dir: Path, lengths: dict[str, int], ranks: Ranks) -> int:
    """Cut this rank's lineage log to what the checkpoint covers; rank 0 also cuts the
    logs of ranks this run does not have (a restart with fewer ranks), which nobody
    appends to any more. Each log has one writer, so the ranks never race."""
    names = [lineage_file(ranks.rank)]
    if ranks.rank == 0:
        on_disk = (p.name for p in checkpoint_dir.glob("trained*.jsonl"))
        names += sorted(n for n in {*lengths, *on_disk} if _retired(n, ranks))
    return sum(rollback_lineage(checkpoint_dir, lengths.get(n, 0), n) for n in names)


def _retired(name: str, ranks: Ranks) -> bool:
    """Whether ``name`` is the lineage log of a rank this run does not have."""
    rank = lineage_rank(name)
    return rank is not None and rank >= ranks.world


def _trainer(config: LearnerConfig) -> L.Trainer:
    """The Trainer without the loop callback (added once the rank is known)."""
    distributed = config.devices * config.num_nodes > 1
    return L.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        # gloo between CPU processes, NCCL between GPUs: Lightning picks by device
        strategy=ddp_strategy() if distributed else "auto",
        precision=config.precision,
        max_epochs=-1,  # an endless stream: one epoch that never ends
        max_steps=config.max_steps or -1,  # in total, counting the checkpoint's steps
        logger=False,
        enable_checkpointing=False,  # ContinuousLoop writes last.ckpt itself, atomically
        enable_progress_bar=False,  # ContinuousLoop logs progress lines instead
        enable_model_summary=False,
        limit_val_batches=0,  # no validation on a stream; nothing counted in epochs
        num_sanity_val_steps=0,
        default_root_dir=config.checkpoint_dir,
    )
