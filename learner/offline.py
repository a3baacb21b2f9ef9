"""Offline training and serving: the API the experiment and backtest use.

``train_offline`` encodes examples under an arm, trains with Lightning for at
most ``max_steps`` steps (stopping early when the loss on each user's newest
examples, held out for validation, stops improving, and keeping the best
weights) and returns a ``TrainedRecommender``, which scores and
ranks items for explicit histories, applying the *same* arm transform to them
that training applied. ``save``/``load`` use safetensors for weights and JSON
for the rest; nothing is pickled.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from safetensors.torch import load_file, save_file
from torch import nn

from learner.arms import STAGE_BASE, ArmConfig, resolve_arm, trains_as_stage
from learner.features import ExampleTensors, encode_examples, encode_histories
from learner.model import ModelConfig, SequenceRecommender, model_config_from_dict
from learner.module import RecommenderModule
from learner.precision import Precision, check_precision
from learner.quiet import quiet_lightning
from learner.vocab import FIRST_INDEX, Vocabularies
from recoil.core.labels import LabelConfig
from recoil.core.records import EXCLUDE_SEEN, HistoryItem, TrainingExample

log = logging.getLogger(__name__)

_FORMAT = "recoil.trained_recommender/1"
_CONFIG_FILE = "recommender.json"
_WEIGHTS_FILE = "model.safetensors"


# The offline ablation's not-to-recommend labels (``recoil backtest``, ``recoil
# experiment``): weighted w = 50, and moving the item rows too (Eq. 1 as written). The
# live defaults (``LabelConfig``, ``ModelConfig``: w = 1, the user's state alone) stay
# as the live loop measured them. Why the item rows: in logged ratings what sets a
# disliked item apart is mostly the item (MovieLens's held-out disliked items had been
# disliked by 36% of those who rated them in training, its held-out positives by 17%),
# which only an item's rows can carry (docs/experiment.md, "Labels that move the items,
# weighted 10"). Why w = 50: a label's gradient on the disliked item's logit is w * p,
# and p of an item the model ranks in its top 10 of thousands is a few percent, so at
# w = 10 a label still weighs less than a positive. In the medium world w = 50 gave the
# labelled arm a lower closed-loop dislike rate than feature_only on all five seeds
# (-6.0% on the mean, where w = 10 tied it) and a stronger response to a dislike; the
# backtest's stage on the heuristic ranked real ratings as before (docs/experiment.md,
# "Dislikes weighted 50").
OFFLINE_DISLIKE_WEIGHT = 50.0


def offline_labels() -> LabelConfig:
    """The labelling the offline ablation trains with (see ``OFFLINE_DISLIKE_WEIGHT``)."""
    return LabelConfig(dislike_weight=OFFLINE_DISLIKE_WEIGHT)


def offline_model() -> ModelConfig:
    """The model the offline ablation trains: the labels move the item rows too."""
    return ModelConfig(negative_label_learning="all")


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults fit ~5 arms x ~400k examples in a CPU budget."""

    max_steps: int = 2000  # optimizer steps (not epochs); ~2.5 epochs of 400k examples
    batch_size: int = 512  # examples per step
    lr: float = 1e-2  # AdamW learning rate (beat 2e-3 in Recall@10 at 600 steps, benchmark)
    weight_decay: float = 0.0  # AdamW decoupled weight decay (embeddings dominate: keep 0)
    softmax: Literal["full", "sampled"] = "full"  # full corpus softmax, or sampled + log-Q
    num_sampled: int = 1024  # uniform negatives per batch in sampled mode
    seed: int = 0  # seeds init, shuffling, dropout and negative sampling
    # torch CPU threads (process-wide). 1 by default: on a small shared CPU, two OpenMP
    # threads competing with other work measured ~9x slower steps than one; None leaves
    # torch's default (all cores), right for a dedicated many-core machine.
    num_threads: int | None = 1
    accelerator: str = "auto"  # Lightning accelerator: CUDA where present, else CPU
    precision: Precision = "32-true"  # or "bf16-mixed" (learner.precision)
    gradient_clip_val: float | None = 1.0  # clip the gradient norm (None: no clipping)
    # lr of the gate, push weights and M relative to lr (learner.module explains why)
    dislike_lr_scale: float = 1.0
    # Early stopping. Each user's newest ``validation_examples`` examples are held out
    # (the time split the backtest itself uses, one step earlier); every
    # ``validation_every`` steps the mean reciprocal rank of their positive labels is
    # measured, training stops after ``patience`` checks without a new best, and the
    # best weights are kept. A ranking yardstick, the same for every arm: the loss
    # stopped KuaiRand's no_signal at 300 steps with HR@10 0.0276 where 800 steps give
    # 0.0303. 0 trains on everything for exactly max_steps (a fixed count: on held-out
    # ratings 3000 steps instead of 800 cost no_signal 7% of HR@10).
    validation_examples: int = 0
    validation_every: int = 100  # optimizer steps between validation checks
    patience: int = 3  # checks without improvement before stopping
    # An exponential moving average of the weights (decay per step; 0: off). Validation
    # checks and the kept weights are the average's, and without validation the average
    # is what training returns. At lr 1e-2 the weights themselves swing from check to
    # check (validation MRR 0.048 -> 0.040 -> 0.047 at steps 700-900 on real ratings),
    # so early stopping picked a swing rather than a point of training.
    weight_average_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1:
            raise ValueError("max_steps and batch_size must be >= 1")
        if self.validation_examples < 0 or self.validation_every < 1 or self.patience < 1:
            raise ValueError("need validation_examples >= 0, validation_every >= 1, patience >= 1")
        check_precision(self.precision)
        if self.softmax not in ("full", "sampled"):
            raise ValueError(f"softmax must be 'full' or 'sampled', got {self.softmax!r}")
        if not 0.0 <= self.weight_average_decay < 1.0:
            raise ValueError(
                f"weight_average_decay must be in [0, 1), got {self.weight_average_decay}"
            )
        if not self.lr > 0 or self.weight_decay < 0 or self.num_sampled < 1:
            raise ValueError("need lr > 0, weight_decay >= 0 and num_sampled >= 1")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {self.num_threads}")


@dataclass(frozen=True)
class TrainingReport:
    """What a training run did: sizes, time and the loss curve."""

    num_examples: int  # examples kept by the arm (rows trained on)
    num_negative: int  # of which not-to-recommend labels
    num_items: int  # real items in the vocabulary
    steps: int  # optimizer steps taken
    encode_seconds: float  # time to encode the examples
    train_seconds: float  # wall time of the Lightning fit
    loss_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, total loss)
    # (step, validation loss) and (step, validation MRR of positives) at each check;
    # empty without a validation split
    validation_curve: list[tuple[int, float]] = field(default_factory=list)
    validation_mrr: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None  # step of the kept weights (None: the last step)
    num_validation: int = 0  # validation examples held out (rows of the arm's labels)
    stage_on: str | None = None  # the arm whose kept weights this run started from

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.train_seconds if self.train_seconds > 0 else math.nan


class ExampleLoader:
    """Shuffled minibatches of encoded examples that a checkpoint can resume exactly.

    Epoch ``e`` visits the rows in ``randperm(n)`` drawn from ``seed + e``, in
    full batches (a last partial batch is dropped; a dataset smaller than one
    batch is one batch). ``state_dict`` holds (epoch, batches taken), so Lightning
    stores it in checkpoints and a resumed fit sees exactly the batches an
    uninterrupted one would have. Batches are sliced from the tensors directly:
    no per-example collation.
    """

    def __init__(
        self, tensors: ExampleTensors, batch_size: int, seed: int = 0, shuffle: bool = True
    ) -> None:
        if tensors.num_examples == 0:
            raise ValueError("no examples to load")
        self.tensors = tensors
        self.batch_size = min(batch_size, tensors.num_examples)
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0  # epochs completed
        self.taken = 0  # batches handed out in the current epoch

    def __len__(self) -> int:
        return self.tensors.num_examples // self.batch_size

    def _order(self, epoch: int) -> torch.Tensor:
        n = self.tensors.num_examples
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch))

    def __iter__(self) -> Iterator[ExampleTensors]:
        order = self._order(self.epoch)
        while self.taken < len(self):
            rows = order[self.taken * self.batch_size : (self.taken + 1) * self.batch_size]
            self.taken += 1
            yield self.tensors.select(rows)
        self.epoch += 1
        self.taken = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "taken": self.taken, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.taken, self.seed = state["epoch"], state["taken"], state["seed"]


class _LossCurve(L.Callback):
    def __init__(self, every: int) -> None:
        self.every = every
        self.points: list[tuple[int, float]] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.every == 0 or step == trainer.max_steps:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.points.append((step, float(loss)))


class _Chunks:
    """Every row of ``tensors`` once per pass, in order, ``size`` rows at a time (a
    validation pass; a list would read to Lightning as several dataloaders)."""

    def __init__(self, tensors: ExampleTensors, size: int) -> None:
        self.tensors, self.size = tensors, size

    def __len__(self) -> int:
        return -(-self.tensors.num_examples // self.size)

    def __iter__(self) -> Iterator[ExampleTensors]:
        for start in range(0, self.tensors.num_examples, self.size):
            yield self.tensors.select(slice(start, start + self.size))


class _WeightAverage(L.Callback):
    """Keeps an exponential moving average of the trainable weights and puts it in their
    place for each validation pass (the training weights go back afterwards) and at the
    end of training. The decay warms up as ``(1 + n) / (10 + n)`` after ``n`` steps, so
    the first checks do not average in the random start; it reaches 0.99 at step ~890,
    and until then the average spans about the last ninth of the steps taken. Place it
    after the callbacks that read the weights in ``on_validation_end``: it restores
    them there."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.average: list[torch.Tensor] = []
        self.live: list[torch.Tensor] = []

    @staticmethod
    def _weights(module: L.LightningModule) -> list[torch.Tensor]:
        return [p.detach() for p in module.parameters() if p.requires_grad]

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.average = [w.clone() for w in self._weights(module)]
        self.updates = 0

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, self._weights(module), 1.0 - decay)

    @torch.no_grad()
    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        weights = self._weights(module)
        self.live = [w.clone() for w in weights]
        torch._foreach_copy_(weights, self.average)

    @torch.no_grad()
    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        torch._foreach_copy_(self._weights(module), self.live)
        self.live = []

    @torch.no_grad()
    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        torch._foreach_copy_(self._weights(module), self.average)


class _BestWeights(L.Callback):
    """Records the validation curves and keeps a copy of the weights where the held-out
    positives ranked best (``val/mrr``, the metric early stopping watches)."""

    def __init__(self) -> None:
        self.curve: list[tuple[int, float]] = []  # (step, loss)
        self.mrr: list[tuple[int, float]] = []  # (step, MRR of held-out positives)
        self.best: tuple[int, float, dict[str, torch.Tensor]] | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        loss = float(trainer.callback_metrics["val/loss"])
        mrr = float(trainer.callback_metrics.get("val/mrr", math.nan))
        step = trainer.global_step
        self.curve.append((step, loss))
        self.mrr.append((step, mrr))
        if math.isfinite(mrr) and (self.best is None or mrr > self.best[1]):
            state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            self.best = (step, mrr, state)


def split_validation(
    examples: Sequence[TrainingExample], per_user: int
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """Each user's newest ``per_user`` examples (by timestamp, then input order) apart
    from the rest; users with no more than ``per_user`` examples keep all for training."""
    if per_user == 0:
        return list(examples), []
    by_user: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        by_user.setdefault(example.user_id, []).append(i)
    held: set[int] = set()
    for rows in by_user.values():
        if len(rows) > per_user:
            rows = sorted(rows, key=lambda i: (examples[i].timestamp, i))
            held.update(rows[-per_user:])
    train = [e for i, e in enumerate(examples) if i not in held]
    validation = [e for i, e in enumerate(examples) if i in held]
    return train, validation


def _quiet(quiet: bool) -> contextlib.AbstractContextManager[None]:
    """Without a progress bar, keep Lightning's banner and known-harmless warnings out of
    the caller's output."""
    return quiet_lightning() if quiet else contextlib.nullcontext()


class TrainedRecommender:
    """A trained model with its vocabularies and arm, ready to rank items."""

    def __init__(
        self,
        model: SequenceRecommender,
        vocabs: Vocabularies,
        arm: ArmConfig,
        max_len: int,
        report: TrainingReport | None = None,
    ) -> None:
        if model.num_items != len(vocabs.items):
            raise ValueError(
                f"model has {model.num_items} item rows but the vocabulary {len(vocabs.items)}"
            )
        self.model = model.eval()
        self.vocabs = vocabs
        self.arm = arm
        self.max_len = max_len
        self.report = report
        self.batch_size = 1024  # histories scored per forward pass

    def item_ids(self) -> list[str]:
        """Known items; column j of ``scores`` is ``item_ids()[j]``."""
        return self.vocabs.items.ids()

    @torch.inference_mode()
    def _score_chunk(self, histories: Sequence[Sequence[HistoryItem]]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        batch = encode_histories(histories, self.vocabs, self.max_len, self.arm).to(device)
        return self.model.scores(batch).float()  # (b, num_items)

    def scores(self, histories: Sequence[Sequence[HistoryItem]]) -> np.ndarray:
        """s.v for every known item, (B, num_items) float32, columns as ``item_ids()``."""
        chunks = [
            self._score_chunk(histories[i : i + self.batch_size]).cpu().numpy()
            for i in range(0, len(histories), self.batch_size)
        ]
        if not chunks:
            return np.zeros((0, self.vocabs.items.num_ids), dtype=np.float32)
        return np.concatenate(chunks)

    def top_k(
        self,
        histories: Sequence[Sequence[HistoryItem]],
        k: int,
        exclude_seen: bool = EXCLUDE_SEEN,
    ) -> list[list[str]]:
        """The k best item ids per history, best first.

        ``exclude_seen`` removes every item of the given history (all of it, not
        just the model's window). Ties break towards the lower item index.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        ids = self.item_ids()
        k = min(k, len(ids))
        result: list[list[str]] = []
        for start in range(0, len(histories), self.batch_size):
            chunk = histories[start : start + self.batch_size]
            result.extend(self._top_k_chunk(chunk, k, exclude_seen, ids))
        return result

    @torch.inference_mode()
    def _top_k_chunk(
        self,
        chunk: Sequence[Sequence[HistoryItem]],
        k: int,
        exclude_seen: bool,
        ids: list[str],
    ) -> list[list[str]]:
        scores = self._score_chunk(chunk)  # (b, N)
        if exclude_seen:
            rows, cols = [], []
            for b, history in enumerate(chunk):
                seen = self.vocabs.items.lookup([h.item_id for h in history]) - FIRST_INDEX
                seen = seen[seen >= 0]  # unknown ids are not among the columns
                rows.append(np.full(len(seen), b))
                cols.append(seen)
            if rows:
                r = torch.from_numpy(np.concatenate(rows)).to(scores.device)
                c = torch.from_numpy(np.concatenate(cols)).to(scores.device)
                scores[r, c] = -math.inf
        top = torch.topk(scores, k, dim=1, sorted=True)
        best, finite = top.indices.cpu().numpy(), top.values.isfinite().cpu().numpy()
        # excluded (-inf) items only fill the tail when fewer than k remain: drop them
        return [
            [ids[j] for j, ok in zip(row, keep, strict=True) if ok]
            for row, keep in zip(best, finite, strict=True)
        ]

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write weights (safetensors), config, arm and vocabularies (JSON) to ``directory``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(path / _WEIGHTS_FILE))
        self.vocabs.save(path)
        meta = {
            "format": _FORMAT,
            "model_config": asdict(self.model.current_config()),
            "arm": asdict(self.arm),
            "max_len": self.max_len,
        }
        (path / _CONFIG_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> TrainedRecommender:
        path = Path(directory)
        meta = json.loads((path / _CONFIG_FILE).read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path} does not hold a recoil recommender ({_FORMAT})")
        model = SequenceRecommender(model_config_from_dict(meta["model_config"]))
        model.load_state_dict(load_file(str(path / _WEIGHTS_FILE), device=str(device)))
        model.to(device)
        return cls(model, Vocabularies.load(path), ArmConfig(**meta["arm"]), meta["max_len"])


def stage_parameters(model: SequenceRecommender) -> list[nn.Parameter]:
    """What a stage on the heuristic trains: the parameters at whose starting values the
    model scores as ``exclude_heuristic`` (the gate, the push, the map) and the
    dislike-rate rows (zero at the start, so the same holds)."""
    rate = list(model.dislike_rate.parameters()) if model.dislike_rate is not None else []
    return [*model.dislike_parameters(), *rate]


def check_stage_model(arms: Iterable[str | ArmConfig], model_config: ModelConfig) -> None:
    """Refuse, before any training, stages of ``arms`` on a model the heuristic is no
    special case of: ``"embed"`` reads disliked items through rows it never trained."""
    staged = [resolve_arm(arm).name for arm in arms if trains_as_stage(arm)]
    if staged and model_config.flagged_input == "embed":
        raise ValueError(
            f"{', '.join(staged)} train as a stage on {STAGE_BASE}, which needs "
            "flagged_input 'drop' or 'gated' (with 'embed' the model reads disliked items "
            "through rows the heuristic never trained)"
        )


def check_stage(arm: ArmConfig, base: TrainedRecommender, model_config: ModelConfig) -> None:
    """Refuse a stage whose start is not the heuristic: the base must be
    ``exclude_heuristic``'s run, and the arm must read the flag and take labels, with
    a model that drops or gates the flagged items (:func:`check_stage_model`)."""
    if base.arm != resolve_arm(STAGE_BASE):
        raise ValueError(f"a stage starts from {STAGE_BASE}'s run, not {base.arm.name!r}'s")
    if not trains_as_stage(arm):
        raise ValueError(
            f"arm {arm.name!r} has no labels for a stage to learn from: only arms that "
            "read the dislike flag and take not-to-recommend labels train as one"
        )
    check_stage_model([arm], model_config)


def _sized_as(config: ModelConfig, model: SequenceRecommender) -> ModelConfig:
    return replace(config, num_items=model.num_items, num_creators=model.num_creators)


def _start_from(
    module: RecommenderModule, base: SequenceRecommender, num_items: int, num_creators: int
) -> None:
    """Load ``base``'s weights into ``module`` (sized as it), grow the tables to the
    stage's vocabulary and freeze all but :func:`stage_parameters`."""
    model = module.model
    staged = {id(p) for p in stage_parameters(model)}
    # the base lacks only what its arm never builds (the dislike-rate rows: zero here;
    # the item feedback counts: set from the stage's examples)
    may_miss = {name for name, p in model.named_parameters() if id(p) in staged}
    may_miss.add("item_feedback")
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if unexpected or not set(missing) <= may_miss:
        raise ValueError(
            "the base model does not fit this arm's: missing "
            f"{sorted(set(missing) - may_miss)}, unexpected {sorted(unexpected)}"
        )
    module.grow_items(num_items)
    module.grow_creators(num_creators)
    for p in model.parameters():
        p.requires_grad_(id(p) in staged)


def train_offline(
    examples: Sequence[TrainingExample],
    arm: str | ArmConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    progress: bool = True,
    base: TrainedRecommender | None = None,
) -> TrainedRecommender:
    """Train one arm on logged examples for at most ``train_config.max_steps`` steps.

    The vocabularies are built from all examples (so every arm sees the same
    items); ``model_config``'s table sizes are replaced by theirs. With
    ``train_config.validation_examples`` each user's newest examples are held out,
    training stops early on their loss, and the best weights are returned.

    With ``base`` (``exclude_heuristic`` trained on the same examples) the arm trains
    as a stage on it: it starts from the base's kept weights and vocabularies, and
    only the parameters at which the model *is* the heuristic learn (the gate, the
    push, the map and the dislike-rate rows: :func:`stage_parameters`); everything
    else stays the base's. The arm's difference from the heuristic is then what its
    labels taught those parameters, not a second training's draw (docs/experiment.md).
    """
    arm = resolve_arm(arm)
    if base is not None:
        check_stage(arm, base, model_config)
    if train_config.num_threads is not None:
        torch.set_num_threads(train_config.num_threads)
    started = time.perf_counter()
    vocabs = copy.deepcopy(base.vocabs) if base is not None else Vocabularies()
    train_examples, held_out = split_validation(examples, train_config.validation_examples)
    # Grow over everything first, so the tables cover the validation items too.
    encode_examples(held_out, vocabs, model_config.max_len, arm, grow=True)
    tensors = encode_examples(train_examples, vocabs, model_config.max_len, arm, grow=True)
    validation = encode_examples(held_out, vocabs, model_config.max_len, arm, grow=False)
    encode_seconds = time.perf_counter() - started
    if tensors.num_examples == 0:
        raise ValueError(f"arm {arm.name!r} keeps none of the {len(examples)} examples")
    config = replace(
        model_config,
        num_items=len(vocabs.items),
        num_creators=len(vocabs.creators),
        # an arm that hides the flag would read row 0 alone: a second state bias that
        # changes its training and says nothing about dislikes
        dislike_rate_rows=model_config.dislike_rate_rows if arm.dislike_feature else 0,
        # an arm without not-to-recommend labels would count none: its offset is 0
        item_dislike_offset=model_config.item_dislike_offset if arm.uses_negative_labels else 0.0,
    )
    log.info(
        "arm %s: %d examples (%d negative), %d items, encoded in %.1fs",
        arm.name, tensors.num_examples, int(tensors.is_negative.sum()),
        vocabs.items.num_ids, encode_seconds,
    )  # fmt: skip

    L.seed_everything(train_config.seed, verbose=False)
    module = RecommenderModule.from_config(
        # a stage loads the base's tables first, then grows them to the vocabulary
        config if base is None else _sized_as(config, base.model),
        lr=train_config.lr,
        weight_decay=train_config.weight_decay,
        softmax=train_config.softmax,
        num_sampled=train_config.num_sampled,
        sampler_seed=train_config.seed,
        dislike_lr_scale=train_config.dislike_lr_scale,
    )
    if base is not None:
        _start_from(module, base.model, len(vocabs.items), len(vocabs.creators))
    # the items' feedback counted once over the rows trained on (a no-op without the
    # offset); counted per step, epochs would multiply the counts and shrink the prior's
    # weight with the number of epochs
    module.model.observe_feedback(tensors.label, tensors.is_negative)
    curve = _LossCurve(every=max(1, train_config.max_steps // 100))
    best = _BestWeights()
    callbacks: list[L.Callback] = [curve]
    validate = validation.num_examples > 0
    if validate:
        callbacks += [best, EarlyStopping("val/mrr", mode="max", patience=train_config.patience)]
    if train_config.weight_average_decay > 0:
        callbacks.append(_WeightAverage(train_config.weight_average_decay))  # after `best`
    with _quiet(not progress):
        trainer = L.Trainer(
            accelerator=train_config.accelerator,
            precision=train_config.precision,
            devices=1,
            max_steps=train_config.max_steps,
            max_epochs=-1,
            enable_checkpointing=False,
            logger=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            gradient_clip_val=train_config.gradient_clip_val,
            callbacks=callbacks,
            val_check_interval=train_config.validation_every if validate else None,
            check_val_every_n_epoch=None if validate else 1,
            num_sanity_val_steps=0,
            limit_val_batches=None if validate else 0,
        )
    loader = ExampleLoader(tensors, train_config.batch_size, train_config.seed)
    val_loader = _Chunks(validation, 2048) if validate else None
    fit_started = time.perf_counter()
    with _quiet(not progress):
        trainer.fit(module, loader, val_loader)
    train_seconds = time.perf_counter() - fit_started
    best_step = None
    if best.best is not None:
        best_step = best.best[0]
        module.load_state_dict(best.best[2])
    report = TrainingReport(
        num_examples=tensors.num_examples,
        num_negative=int(tensors.is_negative.sum()),
        num_items=vocabs.items.num_ids,
        steps=trainer.global_step,
        encode_seconds=encode_seconds,
        train_seconds=train_seconds,
        loss_curve=curve.points,
        validation_curve=best.curve,
        validation_mrr=best.mrr,
        best_step=best_step,
        num_validation=validation.num_examples,
        stage_on=base.arm.name if base is not None else None,
    )
    log.info(
        "arm %s: %d steps in %.1fs (%.1f steps/s), final loss %.4f",
        arm.name, report.steps, train_seconds, report.steps_per_second,
        curve.points[-1][1] if curve.points else math.nan,
    )  # fmt: skip
    return TrainedRecommender(module.model.cpu().eval(), vocabs, arm, config.max_len, report)
