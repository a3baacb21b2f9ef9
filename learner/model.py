"""The sequential recommender: history -> user state ``s``; items -> embeddings ``v``.

A history item's input is the sum of its item, creator, dislike-flag,
dwell-bucket and time-gap embeddings (summing keeps the encoder's width
independent of the number of features; a LayerNorm evens out their scales).
A GRU (the paper's choice) or a causal transformer reads the sequence, and a
linear map turns its last output into ``s`` (B, D). Training's
``p(y|s) = softmax(s @ v.T)[y]`` (see ``learner.loss``); ranking scores are ``s @ v.T``
plus, for arms that take not-to-recommend labels, each item's offset for its share of
them (``learner.item_feedback``), carried as one more coordinate of the vectors a
FAISS index holds (``index_vectors``, ``query_vectors``).

An item's output embedding ``v_j`` is its own row plus a row of its creator
(``creator_output``), so what a label teaches about one item reaches the
creator's other items: a not-to-recommend label on a disliked video lowers the
creator's next videos too. The item -> creator map is a buffer filled from the
examples the model trains on (``observe_creators``), so it travels with the
weights and needs no extra lookup at serving time.

Item tables grow in place (``grow_items``): the Parameter objects are kept and
their data extended, so an optimizer holding them stays valid once its state
is padded (``pad_optimizer_state``); trained rows are never touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from learner.encoder import CausalTransformerEncoder, GRUEncoder
from learner.features import HistoryBatch
from learner.item_feedback import feedback_offsets
from learner.vocab import FIRST_INDEX, PAD_INDEX
from recoil.core.checks import check_finite
from recoil.core.records import NUM_DWELL_BUCKETS, NUM_GAP_BUCKETS
from recoil.core.settings import setting

EncoderKind = Literal["gru", "sasrec"]
FlaggedInput = Literal["gated", "drop", "embed"]
PushForm = Literal["additive", "projection"]
PushLearning = Literal["all", "negatives", "positives", "none"]
NegativeLearning = Literal["all", "state", "push"]


# The command-line group of the settings that shape a new model (recoil learn).
MODEL_GROUP = "model (a new model only; a checkpoint keeps its own)"
# The largest width, depth, head count and history window a config takes: far past any
# model trained here (D = 64), and far below the sizes torch and numpy fail on (near
# 2**63), where the error was a traceback once the data was read or Kafka reached.
MAX_SIZE = 1 << 16
# The largest init std, push scale, push init (either sign) and prior: far past any that
# trains (the defaults are 0 to 10), and far below where the float32 scores overflow to NaN
# (rows of std 1e19) or torch cannot fill a parameter (past 3.4e38); either was a
# traceback after training, when the probe found nothing to recommend.
MAX_SCALE = 1e6
SCALES = ("init_std", "dislike_flag_init_std", "dislike_push_init", "dislike_push_scale",
          "dislike_push_prior", "dislike_push_smooth", "item_dislike_offset",
          "item_dislike_prior")  # fmt: skip


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the model. ``num_items``/``num_creators`` are table rows (vocabulary
    length, reserved rows included); training sets them from the vocabularies."""

    num_items: int = FIRST_INDEX + 1  # item table rows; grows with the item vocabulary
    num_creators: int = FIRST_INDEX + 1  # creator table rows
    embedding_dim: int = setting(64, "D of s and v", group=MODEL_GROUP)  # item and state width
    # the GRU's hidden size, or the transformer's feed-forward width
    hidden_dim: int = setting(64, "GRU / feed-forward width", group=MODEL_GROUP)
    # "gru" as in the paper, or "sasrec" (causal transformer)
    encoder: EncoderKind = setting("gru", "sequence encoder", group=MODEL_GROUP)
    num_layers: int = 1  # stacked GRU / transformer layers
    num_heads: int = 2  # attention heads (sasrec only)
    # newest history items read; 30 of streams' 50 halves CPU training time
    max_len: int = setting(30, "history items the model reads", group=MODEL_GROUP)
    dropout: float = 0.1  # on the summed input embeddings (and inside the transformer)
    tie_embeddings: bool = False  # output item embeddings v share the input item table
    init_std: float = 0.05  # normal init of embedding rows, also for rows added by growth
    # The dislike-flag rows start as nn.Embedding's N(0, 1) times this. At 1.0 (every
    # model before this field) an untrained flag is a random vector about 20x an item
    # row: it swamps the flagged item's own row, and in a minutes-old live model it
    # moved the disliked creator's share by -22% to +41% in a direction training had
    # not chosen (docs/experiment.md, "An untrained flag means nothing"). 0 starts the
    # flag as meaning nothing (both rows, so the plain row every unflagged item reads
    # is 0 too): the two probe branches then differ by the push alone until the data
    # teaches the flag. The live learner starts at 0.
    dislike_flag_init_std: float = setting(
        1.0, "the dislike-flag rows start as N(0, 1) times this", group=MODEL_GROUP
    )
    # v_j = item row + a row for j's creator, shared by the creator's items: a label on
    # one item (positive or not-to-recommend) moves the creator's other items too.
    # Measured on the medium world: Recall@20 0.094 -> 0.108, creator responsiveness
    # of feature_and_labels -15% -> -27% (docs/experiment.md).
    creator_output: bool = True
    # s += sum over disliked history items t of a[age_t] * M v_{item_t}: a learned push
    # of the state away from (a < 0) what the user disliked, so its item, its creator's
    # items and what M maps near them score lower. A summed input embedding leaves the
    # encoder to learn "dislike x this creator -> less of it" as an interaction, which
    # it learned about half of. Arms that hide the dislike flag zero it, so the push is
    # off for them. Medium world, feature_and_labels: responsiveness -19%/-41% ->
    # -40%/-73% (cluster/creator); a scalar push alone (M = I): -24%/-52%. On KuaiRand a
    # free push (a of either sign, learned M) cost 27-34% of positive HR@10 and learned
    # to *pull* towards the newest dislike; ``dislike_push_away`` forbids that.
    dislike_push: bool = True
    dislike_map: bool = False  # learn M (D x D, starts as I); False keeps M = I
    # a's starting value for every age. 0 starts the model as the plain encoder (with
    # "drop": as exclude_heuristic); a negative value starts it backing away from what
    # was disliked before it has learned anything, which a minutes-old model in the live
    # loop needs (see flagged_input). a = 0 stays reachable, so the heuristic stays a
    # special case. With ``dislike_push_away`` an age whose a the data drives past 0 is
    # off (the heuristic's behaviour) but keeps its gradient, so it can come back on.
    dislike_push_init: float = -0.3
    dislike_push_away: bool = True  # True: a <= 0: the push never pulls towards a dislike
    # a = scale x the stored weight. Adam moves a weight by about lr a step whatever its
    # gradient, so at scale 1 a could move 0.002 a step: in the live loop the data drove
    # a from -0.30 to -0.43 in 270 steps while the growing states shrank the push's
    # effect (creator responsiveness -52% at version 1, -6% at version 3). The scale lets
    # a follow a steady signal within a few hundred steps. 1.0 is the old behaviour (and
    # what a config saved without this field means, see ``model_config_from_dict``).
    dislike_push_scale: float = 10.0
    # Which loss terms may move the push (a, M, and the rows it reads): "all"; or
    # "negatives", the not-to-recommend loss alone, so the positive loss cannot switch
    # the push off; or "positives", the positive loss alone (the not-to-recommend term on
    # the *next* disliked item cannot weaken it: pushing away from one dislike lifts
    # every other item's probability, the next dislike's among them); or "none", a
    # fixed push (for measuring what a push of a given size does).
    dislike_push_learning: PushLearning = "all"
    # What the not-to-recommend loss may move. "all": every parameter (Eq. 1 as
    # written). "state": only what makes the user's state (the encoder, its input
    # tables, the push); for the negative rows the output rows v of the items they
    # score are constants. A dislike says "not this, for this user, now", and the
    # user's state is where the model can know it. Lowering v_j itself lowers j for
    # every user whose state points the same way: in the aversion worlds (items some
    # users are drawn to and then dislike, the real ratings' pattern) that cost
    # positive HR@10 against exclude_heuristic, and the labels then cut no more
    # disliked-item hits than the push alone (docs/experiment.md, "The labels move the
    # user's state, not the items"). "push": the push alone (a, and the rows it reads),
    # so the labels say how far to back away from a dislike and nothing else.
    negative_label_learning: NegativeLearning = setting(
        "state",
        "what the not-to-recommend loss may move: all, state (not the item rows) or push",
        group=MODEL_GROUP,
    )
    # A Gaussian prior on a, centred on ``dislike_push_init``: training adds
    # prior * sum over ages of (a - init)^2, so where the data says little about an
    # age (its likelihood is flat) a stays backing away, and the data must earn
    # switching it off. 0: no prior.
    dislike_push_prior: float = 0.0
    # Both of the above are off by default. Medium world, feature_and_labels: a push
    # the positive loss cannot switch off (prior 0.1, or a fixed a = -0.2) is -47% to
    # -68% by cluster over 3 seeds where the default is -19% to -26%; but it costs
    # 12-34% of positive HR@10 against exclude_heuristic in the aversion worlds (the
    # real ratings' pattern) and 33% against no_signal on KuaiRand (fixed -0.2, one
    # seed), where the default keeps them (docs/experiment.md, "A push the positive
    # loss cannot switch off").
    # A random-walk prior over the ages: training adds smooth * sum over ages of
    # (a[k] - a[k+1])^2, so each age borrows strength from its neighbours. On its own
    # each of the 30 ages learns from the ~2.4% of examples with a dislike at that age,
    # and the learned a jumped from age to age by more than the world's memory (half-life
    # 200 impressions) can explain (medium world, seed 3: -0.23, -1.02, -1.34, -0.38 for
    # ages 0-3), the newest age's draw alone setting the probe's figure. 0.01 left seeds
    # 0 and 3 a smooth curve falling with age, and seed 3's cluster responsiveness
    # -29.5% -> -54.3%; 0.1 tied the ages into one weaker push; real logs' stage is
    # unchanged (docs/experiment.md, "A push smooth over ages"). 0: each age on its own.
    dislike_push_smooth: float = 0.01
    # How the push's size is set. "additive": a[age] * M v_j, the same vector whatever
    # the state. "projection": a[age] times the state's pull towards j, its component
    # along M v_j (clamped at 0: a state already turned away is left alone), so
    # a = -1 removes the pull and the push grows with it. Several dislikes apply newest
    # first, each to the pull the newer ones left (a clamped to [-1, 0]): applied
    # together, KuaiRand's runs of dislikes removed the same pull several times over.
    # An additive push is one size against states whose size varies: on the probe's
    # trajectories (drawn from the model's own top 100, so the state points hard at one
    # cluster) it moved the disliked cluster's share far less than on the logged
    # histories it learned from, and in the live loop its effect faded as the states
    # grew. Figures: docs/experiment.md, "The push as a share of the state's pull".
    dislike_push_form: PushForm = setting(
        "projection",
        "the push's size: projection (of the state's pull) or additive",
        group=MODEL_GROUP,
    )
    # How a flagged (disliked) history item reaches the encoder.
    # "drop": it does not; the encoder reads the history as exclude_heuristic does and
    #   the flagged items enter only through the push above, so with a = 0 the model *is*
    #   the heuristic.
    # "embed": it is read like any other item, with a learned dislike-flag embedding
    #   added (the paper's dislike feature). On held-out ratings this cut disliked-item
    #   hits by 15% where dropping cut them by 37%: a disliked item left in the input
    #   still pulls the state towards it.
    # "gated": both, mixed per state dimension by a learned gate g that starts at 0:
    #   s = s_drop + g * (s_embed - s_drop) + push. It starts as the heuristic, and
    #   opens where the flagged items carry signal (on KuaiRand dislikes come in runs,
    #   and the run itself predicts what follows). Costs a second encoder pass.
    # Default "drop" with the away-only projection push and labels that move the state
    # (negative_label_learning="state"): over 3 aversion worlds x 3 training seeds 52%
    # fewer held-out disliked-item hits than exclude_heuristic at 2.3% fewer positives;
    # KuaiRand positives +4.3% against no_signal's (mean of 3 training seeds, -7.5% to
    # +27.5%). "embed" lost to the heuristic on held-out ratings (-15% against -37%
    # disliked-item hits). docs/experiment.md has every figure and the medium world.
    # A *new live* model reads "embed" instead: a minutes-old "drop" model showed the
    # disliked item's creator more, not less (learner.continuous_loop.live_model_config).
    flagged_input: FlaggedInput = setting(
        "drop",
        "how a disliked history item reaches the encoder: drop, embed or gated",
        group=MODEL_GROUP,
    )

    # The user's own rate of dislikes over the history window, as a learned (D,) row
    # added to the state: 0 is off, else the number of rows (row 0: no dislike; the
    # others split sqrt(rate) evenly, so the low rates most users have get finer rows).
    # "drop" hides how much a user dislikes from the encoder; with the row the model can
    # learn "users who dislike often, dislike these items". The rows start at 0, so the
    # model starts as without them (the heuristic stays a special case).
    # Measured on ratings and not adopted: off by default (docs/experiment.md).
    dislike_rate_rows: int = 0

    # Ranking adds weight * log((1 - q_j) / (1 - q_mean)) to s.v_j, q_j the item's share of
    # not-to-recommend labels among those the model trained on, under a Beta prior of
    # ``item_dislike_prior`` labels at the catalogue's share (``learner.item_feedback``).
    # Eq. 1 could not learn an item's own propensity to be disliked (its few labels are
    # outweighed by the positives that set the item's level); counted, it is known as
    # soon as the labels are seen. Only arms that take not-to-recommend labels count
    # them; 0 is off (the heuristic stays a special case). Figures: docs/experiment.md,
    # "Items' own dislike share".
    item_dislike_offset: float = setting(
        2.0,
        "weight of log(1 - the item's dislike share) in ranking scores (0: off)",
        group=MODEL_GROUP,
    )
    item_dislike_prior: float = 10.0  # pseudo-labels at the catalogue's share, per item

    @property
    def counts_item_feedback(self) -> bool:
        """Whether the model keeps the items' feedback counts (its ``item_feedback``
        buffer, 2 values per item row): only with the offset on."""
        return self.item_dislike_offset > 0

    def __post_init__(self) -> None:
        for name, allowed in (
            ("encoder", get_args(EncoderKind)),
            ("flagged_input", get_args(FlaggedInput)),
            ("dislike_push_form", get_args(PushForm)),
            ("dislike_push_learning", get_args(PushLearning)),
            ("negative_label_learning", get_args(NegativeLearning)),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.dislike_rate_rows not in (0, *range(2, 65)):
            raise ValueError(f"dislike_rate_rows must be 0 or 2..64, got {self.dislike_rate_rows}")
        for name in ("embedding_dim", "hidden_dim", "num_layers", "num_heads", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
            if getattr(self, name) > MAX_SIZE:
                raise ValueError(f"{name} must be at most {MAX_SIZE}, got {getattr(self, name)}")
        # the transformer splits each embedding between its heads; its own check comes
        # when the model is built, after the world is simulated or Kafka is reached
        if self.encoder == "sasrec" and self.embedding_dim % self.num_heads:
            raise ValueError(
                f"embedding_dim {self.embedding_dim} is not divisible by num_heads "
                f"{self.num_heads} (encoder sasrec splits it between the heads)"
            )
        if self.num_items < FIRST_INDEX or self.num_creators < FIRST_INDEX:
            raise ValueError(f"num_items and num_creators must be >= {FIRST_INDEX}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        # finite as well: an infinite init or scale makes every weight it touches NaN at
        # the first step
        check_finite("dislike_push_prior", self.dislike_push_prior, ">= 0")
        check_finite("dislike_push_smooth", self.dislike_push_smooth, ">= 0")
        check_finite("item_dislike_offset", self.item_dislike_offset, ">= 0")
        check_finite("item_dislike_prior", self.item_dislike_prior, ">= 0")
        check_finite("dislike_push_scale", self.dislike_push_scale, "> 0")
        check_finite("dislike_flag_init_std", self.dislike_flag_init_std, ">= 0")
        check_finite("init_std", self.init_std, ">= 0")
        if not math.isfinite(self.dislike_push_init):  # of either sign
            raise ValueError(f"dislike_push_init must be finite, got {self.dislike_push_init}")
        for name in SCALES:
            if abs(getattr(self, name)) > MAX_SCALE:
                raise ValueError(
                    f"{name} must be at most {MAX_SCALE:g} in size, got {getattr(self, name)}"
                )


# What a saved config (snapshot manifest, checkpoint hparams, offline model) that
# lacks a field meant: the default when it was written. Fields whose default changed
# since are listed, so an old model loads as it was trained, not as today's default.
_DEFAULTS_BEFORE = {
    "flagged_input": "embed",
    "dislike_map": True,
    "dislike_push_init": 0.0,
    "dislike_push_away": False,
    "dislike_push_scale": 1.0,
    "dislike_push_form": "additive",
    "negative_label_learning": "all",
    "dislike_push_smooth": 0.0,
    "item_dislike_offset": 0.0,
}


def model_config_from_dict(fields: dict[str, Any]) -> ModelConfig:
    """A ``ModelConfig`` from its saved fields (``asdict``), old saves included."""
    return ModelConfig(**{**_DEFAULTS_BEFORE, **fields})


def _grow_embedding(table: nn.Embedding, rows: int, std: float) -> bool:
    """Extend ``table`` to ``rows`` rows in place (same Parameter); True if it grew."""
    old = table.weight.shape[0]
    if rows <= old:
        return False
    weight = table.weight
    extra = torch.empty(rows - old, weight.shape[1], dtype=weight.dtype, device=weight.device)
    nn.init.normal_(extra, std=std)
    with torch.no_grad():
        weight.data = torch.cat([weight.data, extra])
    if weight.grad is not None:
        weight.grad = torch.cat([weight.grad, torch.zeros_like(extra)])
    table.num_embeddings = rows
    return True


def pad_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After ``grow_items``: zero-pad per-parameter state (Adam moments) of grown tables,
    so new rows start with fresh statistics and trained rows keep theirs."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if (
                    isinstance(value, Tensor)
                    and value.dim() == param.dim()
                    and value.dim() > 0
                    and value.shape[1:] == param.shape[1:]
                    and value.shape[0] < param.shape[0]
                ):
                    pad = value.new_zeros((param.shape[0] - value.shape[0], *value.shape[1:]))
                    optimizer.state[param][key] = torch.cat([value, pad])


def _trim(batch: HistoryBatch) -> HistoryBatch:
    """Drop the trailing slots that are padding in every row. The encoders are causal,
    so this changes nothing but the work (short histories)."""
    longest = max(1, int(batch.mask.sum(dim=1).max())) if batch.batch_size else 1
    if longest < batch.item.shape[1]:
        return HistoryBatch(*(t[:, :longest] for t in batch))
    return batch


def newest(batch: HistoryBatch, keep: Tensor, max_len: int) -> HistoryBatch:
    """The newest ``max_len`` items of each row among those where ``keep`` (B, T) is True,
    re-packed left-aligned in order. With ``keep = mask & ~disliked`` this is exactly the
    window ``exclude_heuristic`` reads: disliked items removed, then the newest kept."""
    keep = keep & batch.mask
    after = keep.flip(1).long().cumsum(dim=1).flip(1)  # (B, T) kept items at or after t
    keep = keep & (after <= max_len)
    if bool((keep == batch.mask).all()):
        return _trim(batch)
    slot = keep.long().cumsum(dim=1) - 1  # (B, T) new slot of each kept item
    rows = torch.arange(batch.batch_size, device=keep.device).unsqueeze(1).expand_as(slot)
    fields = []
    for t in batch[:-1]:
        packed = torch.zeros_like(t)  # PAD_INDEX = 0: padding everywhere else
        packed[rows[keep], slot[keep]] = t[keep]
        fields.append(packed)
    mask = torch.zeros_like(batch.mask)
    mask[rows[keep], slot[keep]] = True
    return _trim(HistoryBatch._make([*fields, mask]))


class SequenceRecommender(nn.Module):
    """User state from a history batch, item embeddings, and their dot-product scores."""

    item_creator: Tensor  # (N,) int64 creator row of each item row, PAD_INDEX if unknown
    # (N, 2) positive and not-to-recommend labels trained on per item row; None when
    # ``item_dislike_offset`` is 0 (then not in the state dict either)
    item_feedback: Tensor | None

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embedding_dim
        self.item_input = nn.Embedding(config.num_items, dim, padding_idx=PAD_INDEX)
        self.creator_input = nn.Embedding(config.num_creators, dim, padding_idx=PAD_INDEX)
        self.dislike_input = nn.Embedding(2, dim)
        # scaling the N(0, 1) draw, not drawing again: the random stream and so every
        # other table's init stay as they were (at 1.0 the rows are exactly the draw)
        with torch.no_grad():
            self.dislike_input.weight.mul_(config.dislike_flag_init_std)
        self.dwell_input = nn.Embedding(NUM_DWELL_BUCKETS, dim)
        self.gap_input = nn.Embedding(NUM_GAP_BUCKETS, dim)
        self.input_norm = nn.LayerNorm(dim)
        self.input_dropout = nn.Dropout(config.dropout)
        self.encoder: GRUEncoder | CausalTransformerEncoder
        if config.encoder == "gru":
            self.encoder = GRUEncoder(dim, config.hidden_dim, config.num_layers, config.dropout)
        else:
            self.encoder = CausalTransformerEncoder(
                dim,
                config.hidden_dim,
                config.num_layers,
                config.num_heads,
                config.dropout,
                config.max_len,
            )
        self.to_state = nn.Linear(self.encoder.output_dim, dim)
        self.item_output = None if config.tie_embeddings else nn.Embedding(config.num_items, dim)
        self.creator_output: nn.Embedding | None = None
        # Creator of each item row, learned from the examples seen (PAD: not known yet).
        self.register_buffer(
            "item_creator", torch.full((config.num_items,), PAD_INDEX, dtype=torch.long)
        )
        if config.creator_output:
            self.creator_output = nn.Embedding(config.num_creators, dim, padding_idx=PAD_INDEX)
        counts = torch.zeros(config.num_items, 2) if config.counts_item_feedback else None
        self.register_buffer("item_feedback", counts)
        # g: per state dimension, zero at start, so an untrained gate reads as the heuristic.
        self.flagged_gate: nn.Parameter | None = None
        if config.flagged_input == "gated":
            self.flagged_gate = nn.Parameter(torch.zeros(dim))
        # a: one scalar per recency, ``dislike_push_init`` at start (0: an untrained push
        # changes nothing and the model begins as the plain sequence encoder).
        self.dislike_push: nn.Embedding | None = None
        self.dislike_map: nn.Linear | None = None
        if config.dislike_push:
            self.dislike_push = nn.Embedding(config.max_len, 1)
            init = config.dislike_push_init / config.dislike_push_scale
            nn.init.constant_(self.dislike_push.weight, init)
            if config.dislike_map:
                self.dislike_map = nn.Linear(dim, dim, bias=False)
                nn.init.eye_(self.dislike_map.weight)
        self.dislike_rate: nn.Embedding | None = None
        if config.dislike_rate_rows:
            self.dislike_rate = nn.Embedding(config.dislike_rate_rows, dim)
            nn.init.zeros_(self.dislike_rate.weight)
        for table in [*self._item_tables(), *self._creator_tables()]:
            nn.init.normal_(table.weight, std=config.init_std)
        with torch.no_grad():
            self.item_input.weight[PAD_INDEX].zero_()
            for table in self._creator_tables():
                table.weight[PAD_INDEX].zero_()

    def dislike_parameters(self) -> list[nn.Parameter]:
        """The parameters at which the model starts as exclude_heuristic: the gate, the
        push weights a and the map M."""
        params: list[nn.Parameter] = []
        if self.flagged_gate is not None:
            params.append(self.flagged_gate)
        for module in (self.dislike_push, self.dislike_map):
            if module is not None:
                params.extend(module.parameters())
        return params

    def _item_tables(self) -> list[nn.Embedding]:
        return [self.item_input] + ([self.item_output] if self.item_output is not None else [])

    def _creator_tables(self) -> list[nn.Embedding]:
        return [self.creator_input] + (
            [self.creator_output] if self.creator_output is not None else []
        )

    @property
    def num_items(self) -> int:
        """Rows of the item tables (vocabulary length, reserved rows included)."""
        return int(self.item_input.weight.shape[0])

    @property
    def num_creators(self) -> int:
        return int(self.creator_input.weight.shape[0])

    def embed(self, batch: HistoryBatch) -> Tensor:
        """The summed per-item input embeddings, (B, T, D)."""
        # The three small tables are summed into one row per (flag, dwell, gap) first,
        # and read with one lookup: the same sum, with two fewer (B, T, D) gathers and
        # adds each way (this forward: 47 -> 41 ms at 1,024 x 50 items, one CPU thread,
        # one run each).
        context = (
            self.dislike_input.weight[:, None, None]
            + self.dwell_input.weight[None, :, None]
            + self.gap_input.weight[None, None, :]
        ).flatten(0, 2)  # (2 * dwell buckets * gap buckets, D)
        index = (batch.disliked.long() * NUM_DWELL_BUCKETS + batch.dwell.long()) * (
            NUM_GAP_BUCKETS
        ) + batch.gap.long()  # (B, T) row of the item's (flag, dwell, gap)
        x = (
            self.item_input(batch.item.long())
            + self.creator_input(batch.creator.long())
            + nn.functional.embedding(index, context)
        )  # (B, T, D)
        return self.input_dropout(self.input_norm(x))

    def user_state(self, batch: HistoryBatch) -> Tensor:
        """s, (B, D)."""
        state, push = self.state_parts(batch)
        return state if push is None else state + push

    def state_parts(
        self, batch: HistoryBatch, frozen: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """s without the dislike push, and the push (None without one), each (B, D).
        ``frozen`` (B,) bool: rows whose encoder output is a constant to the gradient,
        the push's included (only the push's own weights learn from them)."""
        # The input may hold more than max_len items (arms with the dislike flag get the
        # whole window, so the dropped view can reach back past flagged items as the
        # heuristic does); each view keeps its newest max_len.
        max_len = self.config.max_len
        recent = newest(batch, batch.mask, max_len)  # (B, <=max_len) every item
        mode = self.config.flagged_input
        if mode == "embed":
            state = self._encode(recent)  # (B, D)
        else:
            dropped = newest(batch, batch.disliked == 0, max_len)  # what the heuristic reads
            state = self._encode(dropped)  # (B, D)
            flagged = bool((recent.disliked * recent.mask).any())
            if self.flagged_gate is not None and flagged:
                # rows without a flagged item read the same either way
                state = state + self.flagged_gate * (self._encode(recent) - state)
        if self.dislike_rate is not None:
            state = state + self.dislike_rate(self._dislike_rate_row(batch))
        if frozen is not None:
            state = torch.where(frozen.unsqueeze(1), state.detach(), state)
        if self.dislike_push is None:
            return state, None
        return state, self._dislike_push(recent, state)

    def _dislike_rate_row(self, batch: HistoryBatch) -> Tensor:
        """Row of ``dislike_rate`` for each history's share of disliked items, (B,)."""
        rows = self.config.dislike_rate_rows
        mask = batch.mask.float()
        disliked = (batch.disliked.float() * mask).sum(1)
        rate = disliked / mask.sum(1).clamp_min(1.0)
        row = 1 + (rate.sqrt() * (rows - 1)).long().clamp(max=rows - 2)
        return torch.where(disliked > 0, row, 0)

    def push_prior_penalty(self) -> Tensor:
        """The push's priors, a training term: prior * sum over ages of (a - init)^2 plus
        smooth * sum over neighbouring ages of (a[k] - a[k+1])^2."""
        prior, smooth = self.config.dislike_push_prior, self.config.dislike_push_smooth
        if self.dislike_push is None or (prior == 0 and smooth == 0):
            return self.item_input.weight.new_zeros(())  # on the model's device
        a = self.config.dislike_push_scale * self.dislike_push.weight.squeeze(-1)
        centre = prior * (a - self.config.dislike_push_init).square().sum()
        return centre + smooth * a.diff().square().sum()

    def push_weights(self) -> Tensor:
        """a per age, (max_len,): the stored weights times ``dislike_push_scale``, before
        the away-only clamp; empty without a push. For reports and tests."""
        if self.dislike_push is None:
            return torch.zeros(0)
        return self.config.dislike_push_scale * self.dislike_push.weight.detach().squeeze(-1)

    def _encode(self, batch: HistoryBatch) -> Tensor:
        """The encoder's state for the history as given, (B, D)."""
        return self.to_state(self.encoder(self.embed(batch), batch.mask))

    def _dislike_push(self, batch: HistoryBatch, state: Tensor) -> Tensor:
        """sum over disliked history items t of a[age_t] * M v_{item_t}, (B, D); in the
        projection form each term is also scaled by the pull s.M v_t / |M v_t|^2 left
        by the newer ones (``_projected_push``)."""
        assert self.dislike_push is not None
        slots = torch.arange(batch.item.shape[1], device=batch.item.device)
        # Histories are left-aligned: the newest item sits at slot length-1 (age 0).
        age = (batch.lengths.unsqueeze(1) - 1 - slots).clamp(0, self.config.max_len - 1)
        a = self.config.dislike_push_scale * self.dislike_push(age).squeeze(-1)  # (B, T)
        if self.config.dislike_push_away:
            # A dislike may only push away. Free, a learned to pull the state towards the
            # newest disliked item on KuaiRand (a[0] = +0.2), where dislikes come in runs,
            # and lost 27% of positive HR@10 (docs/experiment.md). Clamped, the worst it
            # can learn is a = 0: the heuristic.
            # min(a, 0) in value, with the gradient of a itself (straight through): an age
            # the data drove past 0 is off, and the gradient can still bring it back on.
            # With min(a, 0)'s own gradient (0 above 0) an age pushed past 0 once stays off
            # for good, as the newest ages did offline (a[0] > 0 at the kept step).
            a = a - torch.relu(a).detach()
        flagged = batch.disliked * batch.mask  # (B, T)
        weight = a * flagged
        rows = self._output_rows(batch.item.long(), batch.creator.long())  # (B, T, D)
        if self.dislike_map is not None:
            rows = self.dislike_map(rows)
        if self.config.dislike_push_form == "projection":
            return self._projected_push(state, weight, rows, flagged > 0)
        return torch.einsum("bt,btd->bd", weight, rows)

    @staticmethod
    def _projected_push(
        state: Tensor, weight: Tensor, rows: Tensor, flagged: Tensor | None = None
    ) -> Tensor:
        """The projection form's push: newest slot first, each flagged item removes the
        share -a (at most all) of the pull towards it that is *left*. Applied together,
        a run of similar dislikes (KuaiRand: 19% of events, in runs) removed their
        shared pull several times over and turned the state away from where the next
        positives were. ``flagged`` (B, T) marks the disliked slots (default: every
        slot); the others have a = 0 and are skipped."""
        # (B, T) a flag in [-1, 0] so no step overshoots; straight through, as the away
        # clamp: an age held at -1 keeps its gradient and can come back
        share = weight - (weight - weight.clamp(-1.0, 0.0)).detach()
        if flagged is None:
            flagged = torch.ones_like(share, dtype=torch.bool)
        # Each row's flagged slots, newest (highest slot) first, packed into K columns
        # (K = the most any row has, ~2% of the 30 slots): the loop runs K steps, not T,
        # and each unflagged slot it skips would have added exactly 0 (share 0). The
        # values and gradients are those of the loop over every slot; a padded column
        # reads slot 0 with share 0. Gathered from ``share``, a stays in the autograd
        # graph even in a batch without a dislike (gradient 0), or DDP ranks drift from
        # one process (tests/functional/test_learner_ddp.py: 2e-4 apart in a few steps).
        if share.numel() == 0:  # no slot at all; still in the graph, as above
            return torch.zeros_like(state) + 0 * share.sum()
        slots = torch.arange(share.shape[1], device=share.device)
        k = max(int(flagged.sum(1).max()), 1)
        key = torch.where(flagged, slots, -1).topk(k, dim=1).values  # sorted, newest first
        valid = key >= 0  # (B, K)
        index = key.clamp_min(0)
        share = share.gather(1, index) * valid  # (B, K)
        rows = rows.gather(1, index.unsqueeze(-1).expand(-1, -1, rows.shape[-1]))  # (B, K, D)
        norms = rows.square().sum(-1).clamp_min(1e-12)  # (B, K) |v_t|^2
        pushed = state
        for t in range(share.shape[1]):
            pull = (pushed * rows[:, t]).sum(-1).clamp_min(0) / norms[:, t]  # (B,)
            pushed = pushed + (share[:, t] * pull).unsqueeze(1) * rows[:, t]
        return pushed - state

    def _output_item_table(self) -> nn.Embedding:
        """The item part of v: its own output table, or the input table when tied."""
        return self.item_output if self.item_output is not None else self.item_input

    def _output_rows(self, items: Tensor, creators: Tensor) -> Tensor:
        """v for the given item rows, with their creators given (history items may not
        have been seen as labels, so the ``item_creator`` buffer may not know them)."""
        rows = self._output_item_table()(items)
        if self.creator_output is not None:
            rows = rows + self.creator_output(creators)
        return rows

    def item_embeddings(self) -> Tensor:
        """v for every row, (N, D); rows below ``FIRST_INDEX`` are padding/unknown."""
        table = self._output_item_table()
        if self.creator_output is None:
            return table.weight
        return table.weight + self.creator_output(self.item_creator)

    def observe_creators(self, items: Tensor, creators: Tensor) -> None:
        """Record that item rows ``items`` belong to creator rows ``creators`` (same shape);
        reserved rows (padding, unknown) are ignored."""
        known = (items >= FIRST_INDEX) & (creators >= FIRST_INDEX)
        self.item_creator[items[known].long()] = creators[known].long()

    def observe_feedback(self, items: Tensor, negative: Tensor) -> None:
        """Count trained labels: item rows ``items`` and whether each was a
        not-to-recommend label (``negative``, bool, same shape); reserved rows are ignored.
        Nothing to do without the item dislike offset."""
        if self.item_feedback is None:
            return
        known = items >= FIRST_INDEX
        self.item_feedback.index_put_(
            (items[known].long(), negative[known].long()),
            torch.ones((), device=self.item_feedback.device),
            accumulate=True,
        )

    def item_offsets(self) -> Tensor | None:
        """The ranking offset per item row, (N,) (``learner.item_feedback``); None when off."""
        if self.item_feedback is None:
            return None
        return feedback_offsets(
            self.item_feedback, self.config.item_dislike_offset, self.config.item_dislike_prior
        )

    def index_vectors(self) -> Tensor:
        """What ranking compares a query with, (N, D) or (N, D + 1): v, with the item's
        offset as one more coordinate when the model has one (for a FAISS index)."""
        offsets = self.item_offsets()
        v = self.item_embeddings()
        return v if offsets is None else torch.cat([v, offsets.to(v.dtype).unsqueeze(1)], 1)

    def query_vectors(self, batch: HistoryBatch) -> Tensor:
        """s, with a coordinate 1 that meets the items' offsets when the model has them:
        ``query_vectors(b) @ index_vectors().T`` are the ranking scores."""
        state = self.user_state(batch)
        if self.item_feedback is None:
            return state
        return torch.cat([state, state.new_ones(state.shape[0], 1)], 1)

    def scores(self, batch: HistoryBatch) -> Tensor:
        """Ranking scores over the real items, (B, N - FIRST_INDEX): s @ v.T, plus the
        items' offsets when the model has them; column j is item FIRST_INDEX + j."""
        return self.query_vectors(batch) @ self.index_vectors()[FIRST_INDEX:].T

    def grow_items(self, num_items: int) -> bool:
        """Make the item tables ``num_items`` rows long, keeping trained rows.
        Returns True if they grew; then call ``pad_optimizer_state`` on any optimizer."""
        grew = False
        for table in self._item_tables():
            grew |= _grow_embedding(table, num_items, self.config.init_std)
        extra = num_items - self.item_creator.shape[0]
        if extra > 0:
            pad = self.item_creator.new_full((extra,), PAD_INDEX)
            self.item_creator = torch.cat([self.item_creator, pad])
        if self.item_feedback is not None and num_items > self.item_feedback.shape[0]:
            more = self.item_feedback.new_zeros(num_items - self.item_feedback.shape[0], 2)
            self.item_feedback = torch.cat([self.item_feedback, more])
        return grew

    def grow_creators(self, num_creators: int) -> bool:
        """Make the creator table ``num_creators`` rows long, keeping trained rows."""
        grew = False
        for table in self._creator_tables():
            grew |= _grow_embedding(table, num_creators, self.config.init_std)
        return grew

    def current_config(self) -> ModelConfig:
        """The config with the tables' current sizes (what rebuilds this model)."""
        return replace(self.config, num_items=self.num_items, num_creators=self.num_creators)
