"""The LightningModule: model + Eq. 1 loss + AdamW, nothing else.

Its constructor arguments are the configuration (``save_hyperparameters()``),
all plain values so checkpoints load with ``torch.load(weights_only=True)``.
Training is counted in optimizer steps (``Trainer(max_steps=...)``).

Checkpoints restore exactly: model tables are regrown to the checkpoint's
sizes before the weights load, and the sampled-softmax random generator's
state travels with the checkpoint, so a resumed run draws the same negatives.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor

from learner.features import ExampleTensors
from learner.loss import LossTerms, combined_loss, full_softmax_loss, sampled_logits
from learner.model import (
    ModelConfig,
    SequenceRecommender,
    model_config_from_dict,
    pad_optimizer_state,
)
from learner.vocab import FIRST_INDEX

SoftmaxMode = Literal["full", "sampled"]
_RNG_KEY = "recoil_sampler_rng_state"


def positive_mrr(scores: Tensor, labels: Tensor) -> Tensor:
    """Mean reciprocal rank of each row's label among all items (ties rank optimistically).

    scores (B, N), labels (B,) column indices. The same for every arm (it reads only
    positive labels), so early stopping picks each arm's step by one yardstick.
    """
    label_score = scores.gather(1, labels.unsqueeze(1))  # (B, 1)
    rank = (scores > label_score).sum(dim=1) + 1  # (B,)
    return (1.0 / rank.float()).mean()


class RecommenderModule(L.LightningModule):
    """Trains a ``SequenceRecommender`` with the combined loss of Eq. 1."""

    label_counts: Tensor  # (N,) float, times each item was a training label (+1)

    def __init__(
        self,
        model_config: dict[str, Any],
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        softmax: SoftmaxMode = "full",
        num_sampled: int = 1024,
        sampler_seed: int = 0,
        dislike_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if softmax not in ("full", "sampled"):
            raise ValueError(f"softmax must be 'full' or 'sampled', got {softmax!r}")
        self.save_hyperparameters()
        self.lr, self.weight_decay = lr, weight_decay
        self.dislike_lr_scale = dislike_lr_scale
        self.softmax, self.num_sampled = softmax, num_sampled
        self.model = SequenceRecommender(model_config_from_dict(model_config))
        # How often each item has been a label: its in-batch sampling probability
        # for the log-Q correction of sampled softmax (add-one smoothed).
        self.register_buffer("label_counts", torch.ones(self.model.num_items))
        self.sampler = torch.Generator().manual_seed(sampler_seed)

    @classmethod
    def from_config(cls, config: ModelConfig, **kwargs: Any) -> RecommenderModule:
        return cls(asdict(config), **kwargs)

    def forward(self, batch: ExampleTensors) -> Tensor:
        """User states (B, D) for a batch."""
        return self.model.user_state(batch.history)

    def loss_terms(self, batch: ExampleTensors, sampled: bool) -> LossTerms:
        # "push": the not-to-recommend rows move the push's weights alone
        frozen = batch.is_negative if self.model.config.negative_label_learning == "push" else None
        state, push = self.model.state_parts(batch.history, frozen)  # (B, D), (B, D) or None
        if push is not None:
            learning = self.model.config.dislike_push_learning
            if learning == "negatives":  # only the not-to-recommend rows move the push
                push = torch.where(batch.is_negative.unsqueeze(1), push, push.detach())
            elif learning == "positives":  # only the positive rows move it
                push = torch.where(batch.is_negative.unsqueeze(1), push.detach(), push)
            elif learning == "none":
                push = push.detach()
            state = state + push
        # Under bf16-mixed (learner.precision) the encoder ran in bfloat16; the softmax
        # over every item and its gradient need float32's range and digits (and the full
        # softmax's hand-written backward multiplies its inputs as they are saved).
        with torch.autocast(state.device.type, enabled=False):
            return self._loss(state.float(), self.model.item_embeddings().float(), batch, sampled)

    def _loss(
        self, state: Tensor, items: Tensor, batch: ExampleTensors, sampled: bool
    ) -> LossTerms:
        """The loss of user states (B, D) against item embeddings (N, D). Unless
        ``negative_label_learning`` is "all", the negative rows score the items as
        constants: the not-to-recommend loss moves the user's state only ("push": the
        push alone, ``loss_terms``)."""
        label, weight, negative = batch.label, batch.weight, batch.is_negative
        hold = self.model.config.negative_label_learning != "all"
        if not sampled:  # every real item: logits (B, N - FIRST_INDEX), made inside the loss
            return full_softmax_loss(
                state, items[FIRST_INDEX:], label - FIRST_INDEX, weight, negative,
                negatives_move_items=not hold,
            )  # fmt: skip
        if not hold or not bool(negative.any()):
            return self._sampled_loss(state, items, label, weight, negative)
        # Sampled: the two kinds of rows in two passes, each a mean over its own rows,
        # rescaled to the whole batch as one pass would be.
        size = state.shape[0]
        parts = []
        for rows, table in ((~negative, items), (negative, items.detach())):
            terms = self._sampled_loss(
                state[rows], table, label[rows], weight[rows], negative[rows]
            )
            parts.append(terms.total * (int(rows.sum()) / size))
        positive, not_to_recommend = parts
        return LossTerms(positive + not_to_recommend, positive, not_to_recommend)

    def _sampled_loss(
        self, state: Tensor, items: Tensor, label: Tensor, weight: Tensor, is_negative: Tensor
    ) -> LossTerms:
        """Eq. 1 of rows (B,) over their label and a sample of the items (N, D)."""
        log_q = (self.label_counts / self.label_counts.sum()).log()  # (N,)
        logits = sampled_logits(
            state, items, label, self.num_sampled, log_q, self.sampler
        )  # (B, 1 + K), label in column 0
        return combined_loss(logits, torch.zeros_like(label), weight, is_negative)

    def _common_step(self, batch: ExampleTensors, stage: str) -> Tensor:
        # Evaluation always uses the exact full softmax; training may sample.
        sampled = stage == "train" and self.softmax == "sampled"
        if stage == "train":
            self.label_counts.index_add_(0, batch.label, torch.ones_like(batch.weight))
            history = batch.history
            self.model.observe_creators(history.item[history.mask], history.creator[history.mask])
            self.model.observe_creators(batch.label, batch.label_creator)
        terms = self.loss_terms(batch, sampled)
        size = batch.num_examples
        self.log(f"{stage}/loss", terms.total, prog_bar=True, batch_size=size)
        self.log(f"{stage}/loss_pos", terms.positive, batch_size=size)
        self.log(f"{stage}/loss_neg", terms.not_to_recommend, batch_size=size)
        if stage == "train":  # the push's priors, 0 where both are off
            return terms.total + self.model.push_prior_penalty()
        return terms.total

    def training_step(self, batch: ExampleTensors, batch_idx: int) -> Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: ExampleTensors, batch_idx: int) -> Tensor:
        loss = self._common_step(batch, "val")
        positive = ~batch.is_negative
        if bool(positive.any()):
            rows = batch.select(positive)
            mrr = positive_mrr(self.model.scores(rows.history), rows.label - FIRST_INDEX)
            self.log("val/mrr", mrr, batch_size=rows.num_examples)
        return loss

    def test_step(self, batch: ExampleTensors, batch_idx: int) -> Tensor:
        return self._common_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The gate, the push weights and M start where the model *is* exclude_heuristic.
        # Adam moves every parameter by about lr per step whatever its gradient's size, so
        # at the tables' lr these few would wander from there on noise alone; a smaller
        # lr lets them leave only on a steady signal.
        special = {id(p) for p in self.model.dislike_parameters()}
        groups: list[dict[str, Any]] = [
            {"params": [p for p in self.parameters() if id(p) not in special]},
            {
                "params": [p for p in self.parameters() if id(p) in special],
                "lr": self.lr * self.dislike_lr_scale,
            },
        ]
        return torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)

    def grow_items(self, num_items: int, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Grow the item tables (and label counts) to ``num_items`` rows, padding the
        optimizer's state to match; trained rows and their moments are kept."""
        if not self.model.grow_items(num_items):
            return False
        extra = num_items - self.label_counts.shape[0]
        self.label_counts = torch.cat([self.label_counts, self.label_counts.new_ones(extra)])
        if optimizer is not None:
            pad_optimizer_state(optimizer)
        return True

    def grow_creators(
        self, num_creators: int, optimizer: torch.optim.Optimizer | None = None
    ) -> bool:
        if not self.model.grow_creators(num_creators):
            return False
        if optimizer is not None:
            pad_optimizer_state(optimizer)
        return True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[_RNG_KEY] = self.sampler.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Tables may have grown after construction: match the saved shapes first.
        state = checkpoint["state_dict"]
        self.grow_items(int(state["model.item_input.weight"].shape[0]))
        self.grow_creators(int(state["model.creator_input.weight"].shape[0]))
        if _RNG_KEY in checkpoint:
            self.sampler.set_state(checkpoint[_RNG_KEY])
