"""The continuous learner's per-batch duties, as a Lightning callback.

After every batch (trained or a tick): commit the batch's offsets, append its
event ids to the lineage log, export metrics, publish a snapshot when
``snapshot_every_steps`` steps or ``snapshot_every_seconds`` seconds have
passed (checkpointing first), and stop when asked. ``learner.continuous``
explains the guarantees this gives across restarts.

With N ranks every rank runs this callback on its own batches, and what must
happen on all of them at once is decided together: rank 0's clock decides when a
snapshot is due (``strategy.broadcast``), a stop asked on any rank stops all,
and "idle" means idle on every rank (``strategy.reduce_boolean_decision``).
Checkpoints are collective: each rank writes its own lineage log, and the
checkpoint rank 0 writes holds every rank's offsets, lineage lengths and
de-duplication window. Only rank 0 publishes snapshots.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from learner.arms import resolve_arm
from learner.checkpoint import CHECKPOINT_FILE, StreamCheckpoint
from learner.distributed import ONE_PROCESS, DeferredFailureCheckpointIO, Ranks, all_gather
from learner.index import IndexConfig, choose_kind
from learner.kafka_source import KafkaExampleSource
from learner.metrics import LearnerMetrics
from learner.model import MODEL_GROUP, ModelConfig
from learner.precision import Precision, check_precision
from learner.snapshot import SnapshotInfo
from learner.snapshot_publish import publish_snapshot
from learner.stream_training import ContinuousModule, StreamBatch, StreamState
from learner.vocab import FIRST_INDEX
from recoil.core.checks import MAX_SEED, check_finite
from recoil.core.settings import setting
from recoil.core.topics import MODEL_UPDATES, topic_name_problem

log = logging.getLogger(__name__)


def live_model_config() -> ModelConfig:
    """A new live model: offline training's default (``ModelConfig``: the newest 30 of
    the worker's 50 history items) reading the disliked items in it (``"embed"``).

    Offline, ``"drop"`` beats ``"embed"`` on held-out dislikes. A live model starts
    untrained, and a young ``"drop"`` model answers a dislike with the history before
    the disliked item, the very history that led to recommending it: in the live loop
    (tests/integration/test_loop.py, seed 0) it showed the disliked item's creator
    *more* than after a long dwell, +16% to +37% mean over versions 3-5 in 4 runs.
    With ``"embed"`` and the same away-only push every probe of versions 1-5 was
    negative, cluster and creator, on 3 seeds (docs/experiment.md).

    30 items, not all 50: the step's cost grows with the items read, and the learner
    trained 6,587-7,120 examples/s on one thread against 5,615-5,795 with 50
    (``bench.learner_profile``). In the live loop (``scripts/loop_probe.py``, seeds
    0-2, versions 1-5) every probe with 30 was negative (with 50, all but one cluster
    probe, +4%); creator responsiveness, mean of versions 3-5: -47%, -21%, -40% with
    30 against -26%, -24%, -80% with 50 (one probe spans about +-30 points;
    docs/experiment.md).

    The flag starts as meaning nothing (``dislike_flag_init_std=0``): at torch's N(0, 1)
    an untrained flag moved a minutes-old model's disliked-creator share by as much as
    +41% on its own, and 2 of 7 runs of the loop test's seed had a creator mean over
    versions 3-5 at or above 0. Started at 0, all 53 probes of 11 runs on seeds 0-3 were
    negative (docs/experiment.md, "An untrained flag means nothing").

    The push is offline's projection (since 2026-12-02): with it all 30 probes of
    versions 1-5 on seeds 0-2 were negative, creator / cluster means over versions 3-5
    -40% / -13%, -49% / -14%, -51% / -19% (docs/experiment.md)."""
    return ModelConfig(flagged_input="embed", dislike_flag_init_std=0.0)


# Ranks per node and nodes: torch's rendezvous takes their product as an int32, and a
# 20-digit one was its traceback once Kafka was reached.
MAX_RANKS = 1024


@dataclass(frozen=True)
class LearnerConfig:
    """What the continuous learner trains and when it publishes."""

    store: Path = setting(help="snapshot store directory")  # learner.snapshot
    # last.ckpt and the lineage log; the command's default is STORE/checkpoints
    checkpoint_dir: Path = setting(
        help="checkpoint + lineage directory (default: STORE/checkpoints)", cli_default=None
    )
    # a checkpoint must match it
    arm: str = setting("feature_and_labels", "model arm (learner/arms.py)")
    # ignored when resuming (ckpt wins)
    model: ModelConfig = field(default_factory=live_model_config)
    lr: float = setting(2e-3, "AdamW learning rate", group=MODEL_GROUP)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    # The push weights a[age] see only the examples whose history has a dislike at that
    # age: about 2 of a ~100-example stream step. At the tables' lr they follow the last
    # minute or two of data, i.e. its sampling noise: replaying a 15-minute demo's
    # examples, a[0] went -0.3 -> -1.37 -> -0.24 within 300 steps, the same for 3 seeds
    # (docs/live_experiment.md). 0.3 averages about 3x as long.
    dislike_lr_scale: float = setting(
        0.3, "learning-rate factor for the dislike push weights (and gate, M)", group=MODEL_GROUP
    )
    softmax: str = setting(
        "full",
        "full softmax over the corpus, or sampled (large corpora)",
        group=MODEL_GROUP,
        choices=["full", "sampled"],
    )
    num_sampled: int = 1024  # uniform negatives per step in sampled mode
    gradient_clip_val: float | None = 1.0  # gradient norm clip, as offline training does
    seed: int = setting(0, "init, dropout and sampling seed", group=MODEL_GROUP)
    # counted from the last snapshot
    snapshot_every_steps: int = setting(200, "publish a snapshot after this many optimizer steps")
    snapshot_every_seconds: float = setting(
        30.0, "... or after this many seconds, if anything was trained"
    )
    max_steps: int | None = setting(None, "stop after this many steps")  # in total
    # with nothing left to read
    stop_when_idle_s: float | None = setting(
        None,
        "stop after this long without new examples",
        flag="--stop-when-idle",
        metavar="SECONDS",
    )
    keep_snapshots: int = setting(10, "versions kept in the store (0 = all)")  # < 1 keeps all
    index: IndexConfig = field(default_factory=IndexConfig)  # FAISS index per snapshot
    # Lightning accelerator: CUDA where present, else CPU
    accelerator: str = setting(
        "auto",
        "where ranks train: auto = CUDA where present (then --devices counts GPUs)",
        choices=["auto", "cpu", "cuda"],
    )
    # bf16-mixed: the encoder's products in bfloat16 (learner.precision says what it buys)
    precision: Precision = setting(
        "32-true",
        "arithmetic of the training step: bf16-mixed runs the encoder's products in "
        "bfloat16 (weights and loss in float32)",
    )
    log_every_s: float = 10.0  # progress log line interval
    # trained.jsonl: event ids per step
    lineage_log: bool = setting(
        True, "do not log trained event ids to CHECKPOINT_DIR/trained.jsonl (~30 bytes/example)"
    )
    # snapshot announcements; None: none
    model_updates_topic: str | None = setting(
        MODEL_UPDATES, "topic announcing snapshots ('' = do not announce)", empty_is_none=True
    )
    # > 1: DDP (learner.distributed)
    devices: int = setting(
        1,
        "data-parallel ranks on this node: CPU processes (gloo) or GPUs (NCCL); each reads "
        "its own partitions of --topic (docs/operations.md)",
    )
    # Lightning's environment
    num_nodes: int = setting(
        1, "nodes running --devices ranks each (MASTER_ADDR, MASTER_PORT, NODE_RANK)"
    )

    def __post_init__(self) -> None:
        resolve_arm(self.arm)
        check_precision(self.precision)
        if self.devices < 1 or self.num_nodes < 1:
            raise ValueError(f"devices and num_nodes must be >= 1, got {self.devices}, "
                             f"{self.num_nodes}")  # fmt: skip
        if self.devices > MAX_RANKS or self.num_nodes > MAX_RANKS:  # torch's store: an int32
            raise ValueError(f"devices and num_nodes must be at most {MAX_RANKS}, got "
                             f"{self.devices}, {self.num_nodes}")  # fmt: skip
        for name in ("snapshot_every_steps", "num_sampled"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED}, got {self.seed}")
        positive = ("lr", "dislike_lr_scale", "snapshot_every_seconds", "log_every_s")
        for name in (*positive, "gradient_clip_val"):
            if getattr(self, name) is not None:
                check_finite(name, getattr(self, name), "> 0")
        check_finite("weight_decay", self.weight_decay, ">= 0")
        if self.stop_when_idle_s is not None:
            check_finite(
                "stop_when_idle_s",
                self.stop_when_idle_s,
                ">= 0",
                "a finite number of seconds",
                "(leave it unset to never stop)",
            )
        if self.model_updates_topic is not None:
            problem = topic_name_problem(self.model_updates_topic)
            if problem:
                raise ValueError(f"model_updates_topic {self.model_updates_topic!r}: {problem}")
        if self.softmax not in ("full", "sampled"):
            raise ValueError(f"softmax must be 'full' or 'sampled', got {self.softmax!r}")


@dataclass
class LearnerResult:
    """What a run did (for tests and the command's exit summary)."""

    steps: int = 0  # global step at the end (including steps before a resume)
    resumed_from_step: int | None = None  # the checkpoint's step, when the run resumed
    examples: int = 0  # examples consumed in this run
    duplicates: int = 0  # re-delivered examples dropped in this run
    skipped: int = 0  # records skipped in this run (oversized, undecodable, invalid)
    snapshot_failures: int = 0  # publishes that failed in this run (training went on)
    snapshots: list[SnapshotInfo] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)  # trained through, at the end
    rank: int = 0  # this process's rank (N ranks: each has its own result)


class _RankPart(NamedTuple):
    """What each rank adds to a checkpoint."""

    offsets: dict[int, int]  # its partitions, trained through
    seen: list[str]  # its de-duplication window (trained ids only)
    lineage: tuple[str, int]  # its lineage log and the bytes the model covers
    examples: int  # examples it counts in the lineage
    vocab: tuple[int, int, list[str]]  # item rows, creator rows, last item: equal on all


class ContinuousLoop(L.Callback):
    """After every batch: commit, lineage, metrics, snapshot on schedule, stop."""

    def __init__(
        self,
        config: LearnerConfig,
        source: KafkaExampleSource,
        state: StreamState,
        metrics: LearnerMetrics,
        result: LearnerResult,
        offsets: dict[int, int],
        examples_total: int,
        topic: str,
        should_stop: Callable[[], bool],
        announce: Callable[[SnapshotInfo], None] | None,
        ranks: Ranks = ONE_PROCESS,
        retired_lineage: dict[str, int] | None = None,
    ) -> None:
        self.config = config
        self.ranks = ranks
        # lineage logs of ranks a restart with fewer ranks left behind: name -> bytes
        self.retired_lineage = dict(retired_lineage or {})
        self.source = source
        self.state = state
        self.metrics = metrics
        self.result = result
        self.offsets = dict(offsets)  # trained through: what a checkpoint stores
        # consumed over the model's whole lineage: this rank's part (rank 0 carries the
        # checkpoint's count); a checkpoint sums the ranks' parts
        self.examples_total = examples_total
        self._all_offsets = dict(offsets)  # every rank's, as of the last checkpoint
        self._all_examples = examples_total  # every rank's, as of the last checkpoint
        self.topic = topic
        self.should_stop = should_stop
        self.announce = announce
        self.arm = resolve_arm(config.arm)
        config.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = config.checkpoint_dir / CHECKPOINT_FILE
        lineage = config.checkpoint_dir / ranks.lineage_file()
        self._lineage = lineage.open("a") if config.lineage_log else None
        self._last_batch: StreamBatch | None = None
        self._snapshot_step = -1
        self._snapshot_time = time.monotonic()
        self._last_example_time = time.monotonic()
        self._last_log = time.monotonic()
        self._last_losses: dict[str, float] = {}
        self._lag = 0  # messages not yet trained on, all partitions
        self._finished = False
        # the SIGTERM handler before Lightning's (recoil learn's: it sets the stop event)
        self._sigterm = signal.getsignal(signal.SIGTERM)

    # -- per batch -------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot_step = trainer.global_step
        self._snapshot_time = time.monotonic()
        if self.ranks.distributed and self._sigterm is not None:
            # Lightning's SIGTERM handler (installed by fit) broadcasts from inside the
            # signal handler under DDP, out of step with the collectives the ranks are in,
            # and the ranks hang. The learner's own stop is collective already (asked on
            # any rank stops all, after a final checkpoint): put the previous one back.
            signal.signal(signal.SIGTERM, self._sigterm)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        batch = cast(StreamBatch, batch)
        self.state.pending.popleft()  # this batch is trained (or was a tick)
        now = time.monotonic()
        stepped = bool(outputs)
        taken = len(batch.event_ids)
        self.result.duplicates += batch.duplicates
        self.result.skipped += batch.invalid
        self.metrics.record_skipped(batch.skipped)
        if taken:
            self._last_example_time = now
            self.examples_total += taken
            self.result.examples += taken
        if taken and self._lineage is not None:
            record = {"step": trainer.global_step, "rows": int(outputs["rows"]) if stepped else 0,
                      "event_ids": list(batch.event_ids), "offsets": batch.offsets}  # fmt: skip
            self._lineage.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._lineage.flush()
        if stepped:
            if outputs["rows"]:  # a rank without rows joined the step: it has no loss to show
                self._last_batch = batch
                terms = ("positive", "not_to_recommend", "total")
                self._last_losses = {k: outputs[k] for k in terms}
            self.metrics.record_step(taken, self._last_losses)
        elif taken:
            self.metrics.record_consumed(taken)
        if batch.offsets != self.offsets:
            self.offsets = dict(batch.offsets)
            self.source.commit(self.offsets)  # only after the step that used them
        lag = self.source.lag(self.offsets)
        self._lag = sum(lag.values())
        self.metrics.record_lag(lag)
        self.metrics.record_assignment(self.source.held_partitions(), self.source.rejoins)
        self.result.steps = trainer.global_step
        self.result.offsets = dict(self.offsets)
        due = self._snapshot_due(trainer.global_step, now)
        if self.ranks.distributed:  # checkpoints are collective: rank 0's clock decides
            due = trainer.strategy.broadcast(due, src=0)
        if due:
            self.publish(trainer, pl_module)
        if now - self._last_log >= self.config.log_every_s:
            self._log_progress(trainer.global_step)
            self._last_log = now
        if self._should_stop(trainer, now):
            trainer.should_stop = True

    def _snapshot_due(self, step: int, now: float) -> bool:
        new_steps = step - self._snapshot_step
        if new_steps <= 0:
            return False
        return (
            new_steps >= self.config.snapshot_every_steps
            or now - self._snapshot_time >= self.config.snapshot_every_seconds
        )

    def _should_stop(self, trainer: L.Trainer, now: float) -> bool:
        """Asked to stop (on any rank), or idle ``stop_when_idle_s`` (on every rank)."""
        asked = self.should_stop()
        if not self.source.assigned() or self._lag > 0:  # waiting is not idleness
            self._last_example_time = now
        limit = self.config.stop_when_idle_s
        idle = limit is not None and now - self._last_example_time >= limit
        if self.ranks.distributed:
            asked = trainer.strategy.reduce_boolean_decision(asked, all=False)
            idle = trainer.strategy.reduce_boolean_decision(idle, all=True)
        return asked or idle

    def _log_progress(self, step: int) -> None:
        losses = self._last_losses
        log.info(
            "step %d | %d examples this run | loss %.4f (positive %.4f, not-to-recommend %.4f) "
            "| lag %d | %d items",
            step, self.result.examples, losses.get("total", float("nan")),
            losses.get("positive", float("nan")), losses.get("not_to_recommend", float("nan")),
            self._lag, self.state.vocabs.items.num_ids,
        )  # fmt: skip
        if not self.source.assigned():  # lag 0 would read as caught up: say why it is 0
            log.warning(
                "no partitions of %s held: the consumer group has not given this learner "
                "any (is another member of group %r holding them?)",
                self.topic, self.source.config.group,
            )  # fmt: skip

    # -- checkpoints and snapshots ---------------------------------------------------------
    def save_checkpoint(self, trainer: L.Trainer) -> None:
        """``last.ckpt`` via a temporary file and ``os.replace``: never half written.
        Collective with N ranks: every rank calls it, rank 0 writes the file, and if
        that fails every rank raises (so all of them count it and go on in step)."""
        tmp = self.checkpoint_path.with_name(f".{CHECKPOINT_FILE}.{uuid.uuid4().hex}")
        failure: Exception | None = None
        try:
            trainer.save_checkpoint(tmp, weights_only=False)  # optimizer state too
            checkpoint_io = trainer.strategy.checkpoint_io
            if isinstance(checkpoint_io, DeferredFailureCheckpointIO):
                checkpoint_io.raise_failure()
            if trainer.is_global_zero:
                os.replace(tmp, self.checkpoint_path)
        except Exception as exc:
            failure = exc
        finally:
            tmp.unlink(missing_ok=True)
        if self.ranks.distributed:
            failed = trainer.strategy.reduce_boolean_decision(failure is not None, all=False)
            if failed and failure is None:
                failure = RuntimeError("the checkpoint could not be written (on rank 0)")
        if failure is not None:
            raise failure

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        module = cast(ContinuousModule, pl_module)
        vocabs = self.state.vocabs
        items = vocabs.items.ids()[: module.model.num_items - FIRST_INDEX]
        creators = vocabs.creators.ids()[: module.model.num_creators - FIRST_INDEX]
        pending = {i for ids in self.state.pending for i in ids}  # fetched, not trained
        if self._lineage is not None:
            self._lineage.flush()
        # Every rank's part, gathered on every rank (a collective: dump_checkpoint runs on
        # all of them). A partition's offset is the same whichever rank read it, so the
        # union re-maps onto any number of ranks at the next start.
        mine = _RankPart(
            offsets=dict(self.offsets),
            seen=[i for i in self.source.seen if i not in pending],
            lineage=(self.ranks.lineage_file(), self._lineage.tell() if self._lineage else 0),
            examples=self.examples_total,
            vocab=(len(items), len(creators), items[-1:]),
        )
        parts = all_gather(mine)
        if any(p.vocab != mine.vocab for p in parts):  # learner.distributed's invariant
            raise RuntimeError(f"ranks disagree on the vocabulary: {[p.vocab for p in parts]}")
        self._all_offsets = {p: o for part in parts for p, o in part.offsets.items()}
        self._all_examples = sum(part.examples for part in parts)
        lineage_files = {**self.retired_lineage, **dict(part.lineage for part in parts)}
        StreamCheckpoint(
            arm=self.arm.name,
            topic=self.topic,
            offsets=dict(self._all_offsets),
            vocab_items=tuple(items),
            vocab_creators=tuple(creators),
            items_meta={i: m for i in items if (m := self.state.items_meta.get(i)) is not None},
            seen_ids=tuple(i for part in parts for i in part.seen),
            examples_total=self._all_examples,
            lineage_files=lineage_files,  # every rank's log, retired ranks' included
        ).to_checkpoint(checkpoint)

    def publish(self, trainer: L.Trainer, pl_module: L.LightningModule) -> SnapshotInfo | None:
        """Checkpoint, publish a snapshot of the same step, announce it. A failure at any
        stage is logged and counted (``recoil_learner_snapshot_failures_total{stage}``):
        training goes on and the next trigger tries again. A snapshot is never published
        without the checkpoint it names; one published but not announced stays published
        (serving polls the store)."""
        module = cast(ContinuousModule, pl_module)
        self._snapshot_step = trainer.global_step
        self._snapshot_time = time.monotonic()
        stage = "checkpoint"
        try:
            self.save_checkpoint(trainer)
            if not trainer.is_global_zero:  # one model, one publisher
                return None
            stage = "publish"
            info = publish_snapshot(
                self.config.store, module.model, self.state.vocabs, self.arm,
                self.state.items_meta, trainer.global_step, self._all_offsets, topic=self.topic,
                examples=self._all_examples, index_config=self.config.index,
                queries=self._recent_states(module), announce=None,
                keep=self.config.keep_snapshots,
                extra={"checkpoint": str(self.checkpoint_path.resolve())},
            )  # fmt: skip
        except Exception:
            log.exception("snapshot at step %d failed (%s); training continues",
                          trainer.global_step, stage)  # fmt: skip
            self._failed(stage)
            return None
        self.metrics.record_snapshot(info.version, info.created_at, info.publish_seconds)
        self.result.snapshots.append(info)
        if self.announce is not None:
            try:
                self.announce(info)
            except Exception:
                log.exception("snapshot v%d is published but announcing it on %s failed",
                              info.version, self.config.model_updates_topic)  # fmt: skip
                self._failed("announce")
        return info

    def _failed(self, stage: str) -> None:
        self.metrics.record_snapshot_failure(stage)
        self.result.snapshot_failures += 1

    def _recent_states(self, module: ContinuousModule) -> Any:
        """User states of the last batch: realistic queries to tune an IVF index."""
        batch = self._last_batch
        if batch is None or batch.examples is None:
            return None
        if choose_kind(module.model.num_items - FIRST_INDEX, self.config.index) != "ivf":
            return None
        model = module.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            states = model.query_vectors(batch.examples.history.to(module.device))
        model.train(was_training)
        return states.cpu().numpy()

    # -- the end ---------------------------------------------------------------------------
    def finish(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Final checkpoint, and a snapshot if anything was trained since the last one."""
        if self._finished:
            return
        self._finished = True
        if trainer.global_step > self._snapshot_step:
            self.publish(trainer, pl_module)
        else:
            self.save_checkpoint(trainer)
        self.source.commit(self.offsets)
        self.result.offsets = dict(self._all_offsets)  # every rank's: the checkpoint's
        self._log_progress(trainer.global_step)
        if self._lineage is not None:
            self._lineage.close()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.finish(trainer, pl_module)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException | KeyboardInterrupt):
            self.finish(trainer, pl_module)
