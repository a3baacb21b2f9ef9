r"""The paper's loss (Eq. 1): positive labels plus the "not-to-recommend" term.

.. math::

    \mathcal{L} = -\sum_{i \in D_{pos}} r_i \log p(y_i|s_i)
                  -\sum_{i \in D_{neg}} w_i \log(1 - p(y_i|s_i)),
    \qquad p(y|s) = \mathrm{softmax}(s^\top v)_y

Here both sums are divided by the batch size B (positive and negative rows
together), so the loss is a per-example mean whose scale does not depend on
the batch size or on the share of negative labels in it.

``log(1 - p_y)`` is computed as ``logsumexp(logits without y) - logsumexp(logits)``
(y masked with -inf), never as ``log(1 - softmax(...))``: the latter rounds to
``log(0)`` as p -> 1 and loses all precision as p -> 0. Its gradient with respect
to the logits is ``softmax_without_y - softmax``, bounded by 1 in every entry,
so it stays finite at both ends (the paper's argument against negative weights
on ``log p``, whose gradient blows up as p -> 0).

Sampled softmax (``sampled_logits``) replaces the full item axis with the
label plus sampled candidates whose logits are corrected by the log of their
expected count; the same columns then serve both terms, so the
not-to-recommend term uses the same partition estimate as the positive one.

``full_softmax_loss`` is ``combined_loss`` over every item with the scores
``s @ v.T`` computed inside and a hand-written backward: the gradient of a row's
term with respect to its logits is ``c (P - e_y)`` (positive) or ``c (P - Q)``
(negative, Q the softmax over the other items), written in place over the
(B, N) logits. Autograd's version of the same sum makes about a dozen passes
over (B, N) tensors, most of them fresh allocations: 72-78 ms forward and backward
at 1,024 rows x 5,000 items on one CPU thread, against 30 ms here. All functions are
pure: no config, no logging.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class LossTerms(NamedTuple):
    """Eq. 1 and its two parts, each already divided by the batch size."""

    total: Tensor  # () positive + not_to_recommend
    positive: Tensor  # () -sum r log p over positive rows, / B
    not_to_recommend: Tensor  # () -sum w log(1 - p) over negative rows, / B


def log_softmax_prob(logits: Tensor, labels: Tensor) -> Tensor:
    """log p(y|s) per row: (B, N) logits, (B,) label columns -> (B,)."""
    logits = logits.float()
    label_logit = logits.gather(1, labels.unsqueeze(1)).squeeze(1)  # (B,)
    return label_logit - torch.logsumexp(logits, dim=1)


def log_one_minus_prob(logits: Tensor, labels: Tensor) -> Tensor:
    """log(1 - p(y|s)) per row, stably: (B, N) logits, (B,) label columns -> (B,).

    Needs at least one other finite logit per row (otherwise 1 - p is exactly 0).
    """
    logits = logits.float()
    others = logits.scatter(1, labels.unsqueeze(1), -math.inf)  # (B, N) y masked
    return torch.logsumexp(others, dim=1) - torch.logsumexp(logits, dim=1)


def not_to_recommend_loss(logits: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
    """-w log(1 - p(y|s)) per row: (B, N), (B,), (B,) -> (B,)."""
    return -weights * log_one_minus_prob(logits, labels)


def combined_loss(
    logits: Tensor, labels: Tensor, weights: Tensor, is_negative: Tensor
) -> LossTerms:
    """Eq. 1 over a batch, normalised by the batch size B.

    logits (B, N) scores over the candidates (all items, or ``sampled_logits``);
    labels (B,) the label's column; weights (B,) r or w; is_negative (B,) bool,
    True where the row is a not-to-recommend label.
    """
    batch = logits.shape[0]
    if batch == 0:
        zero = logits.sum() * 0.0
        return LossTerms(zero, zero, zero)
    logits = logits.float()
    weights = weights.float()
    lse_all = torch.logsumexp(logits, dim=1)  # (B,) shared by both terms
    label_logit = logits.gather(1, labels.unsqueeze(1)).squeeze(1)  # (B,)
    log_p = label_logit - lse_all  # (B,)
    positive = -(weights * log_p * (~is_negative)).sum() / batch
    if bool(is_negative.any()):
        negative_rows = is_negative.nonzero().squeeze(1)  # only these need the masked sum
        neg_logits = logits[negative_rows]  # (b, N)
        others = neg_logits.scatter(1, labels[negative_rows].unsqueeze(1), -math.inf)
        log_1mp = torch.logsumexp(others, dim=1) - lse_all[negative_rows]  # (b,)
        not_to_recommend = -(weights[negative_rows] * log_1mp).sum() / batch
    else:
        # keeps the graph and device; log_p, not the logits, whose masked columns are
        # -inf (``sampled_logits``), and -inf * 0 is NaN
        not_to_recommend = log_p.sum() * 0.0
    return LossTerms(positive + not_to_recommend, positive, not_to_recommend)


def sampled_logits(
    state: Tensor,
    item_emb: Tensor,
    labels: Tensor,
    num_uniform: int,
    log_q: Tensor | None = None,
    generator: torch.Generator | None = None,
    first_item: int = 2,
) -> Tensor:
    """Sampled-softmax logits with the label at column 0.

    state (B, D) user states; item_emb (N, D) all item embeddings (rows below
    ``first_item`` are padding/unknown and never sampled); labels (B,) item
    indices; ``num_uniform`` M items drawn uniformly from ``[first_item, N)``;
    ``log_q`` (N,) log-probability that an in-batch label is item j (its label
    frequency), or None to use uniform samples only.

    Candidates are the batch's labels (if ``log_q``) and the M uniform draws.
    Each candidate logit is ``s.v_j - log E[count_j]`` with
    ``E[count_j] = B q_j + M / (N - first_item)`` (mixed negative sampling), so
    ``sum_k exp(corrected_k)`` is an unbiased estimate of the sum over all other
    items, and ``logsumexp`` of the row approaches the full softmax's as M grows.
    Candidates equal to the row's own label (accidental hits) are masked with -inf.
    Returns (B, 1 + K) logits, K = B + M (or M without ``log_q``).
    """
    num_items = item_emb.shape[0]
    pool = num_items - first_item
    if pool < 1 or num_uniform < 0:
        raise ValueError(f"need items beyond row {first_item} and num_uniform >= 0")
    uniform = torch.randint(
        first_item, num_items, (num_uniform,), generator=generator, device="cpu"
    ).to(item_emb.device)  # (M,) drawn on CPU so a seed reproduces on any device
    batch = labels.shape[0]
    if log_q is not None:
        candidates = torch.cat([labels, uniform])  # (K,)
        expected = batch * log_q.float().exp()[candidates] + num_uniform / pool  # (K,)
    else:
        candidates = uniform
        expected = torch.full((num_uniform,), num_uniform / pool, device=item_emb.device)
    label_logit = (state * item_emb[labels]).sum(dim=1, keepdim=True)  # (B, 1)
    cand_logits = state @ item_emb[candidates].T - expected.log()  # (B, K)
    hits = candidates.unsqueeze(0) == labels.unsqueeze(1)  # (B, K)
    cand_logits = cand_logits.masked_fill(hits, -math.inf)
    return torch.cat([label_logit, cand_logits], dim=1)  # (B, 1 + K)


class _FullSoftmaxRows(torch.autograd.Function):
    """Per-row Eq. 1 terms over all items: -r log p (positive rows), -w log(1 - p)
    (negative rows), with the logits ``state @ items.T`` made and reused in place."""

    @staticmethod
    def forward(
        ctx: Any, state: Tensor, items: Tensor, labels: Tensor, weights: Tensor,
        is_negative: Tensor, negatives_move_items: bool,
    ) -> Tensor:  # fmt: skip
        logits = state @ items.T  # (B, N)
        lse = torch.logsumexp(logits, dim=1)  # (B,)
        log_p = logits.gather(1, labels.unsqueeze(1)).squeeze(1) - lse  # (B,)
        rows = -weights * log_p  # (B,) the negative rows are overwritten below
        negative = is_negative.nonzero().squeeze(1)  # (b,)
        # Q, the softmax over the items other than y, on the negative rows only
        others = logits[negative].scatter_(1, labels[negative].unsqueeze(1), -math.inf)
        lse_others = torch.logsumexp(others, dim=1)  # (b,)
        rows[negative] = -weights[negative] * (lse_others - lse[negative])
        q = others.sub_(lse_others.unsqueeze(1)).exp_()  # (b, N), 0 at y
        ctx.save_for_backward(state, items, logits, lse, labels, weights, negative, q)
        ctx.negatives_move_items = negatives_move_items
        return rows

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_rows: Tensor) -> tuple[Tensor | None, ...]:
        state, items, logits, lse, labels, weights, negative, q = ctx.saved_tensors
        coef = grad_rows * weights  # (B,)
        # d row / d logits: c (P - e_y) on positive rows, c (P - Q) on negative rows.
        grad = logits.sub_(lse.unsqueeze(1)).exp_().mul_(coef.unsqueeze(1))  # c P, in place
        positive = torch.ones_like(coef, dtype=torch.bool)
        positive[negative] = False
        rows = torch.arange(coef.shape[0], device=coef.device)
        grad[rows[positive], labels[positive]] -= coef[positive]
        grad[negative] -= coef[negative].unsqueeze(1) * q
        grad_state = grad @ items if ctx.needs_input_grad[0] else None
        grad_items = None
        if ctx.needs_input_grad[1]:
            # d/d items sums grad_b x state_b over rows; rows that may not move the items
            # (the negative rows, unless they may) add nothing
            if not ctx.negatives_move_items:
                state = state * positive.unsqueeze(1)
            grad_items = grad.T @ state
        return grad_state, grad_items, None, None, None, None


def full_softmax_loss(
    state: Tensor, items: Tensor, labels: Tensor, weights: Tensor, is_negative: Tensor,
    negatives_move_items: bool = True,
) -> LossTerms:  # fmt: skip
    """``combined_loss(state @ items.T, labels, weights, is_negative)``, the same value and
    gradients, in fewer passes over the (B, N) logits (see the module docstring).

    state (B, D) user states; items (N, D) item embeddings; labels (B,) label rows of
    ``items``; weights (B,) r or w; is_negative (B,) bool. The logits are not kept
    after the backward pass (it overwrites them): a second backward is not supported.
    ``negatives_move_items=False``: the negative rows' gradient reaches ``state`` only,
    as if they scored ``items.detach()``.
    """
    batch = state.shape[0]
    if batch == 0:
        zero = (state.sum() + items.sum()) * 0.0
        return LossTerms(zero, zero, zero)
    dtype = torch.promote_types(state.dtype, torch.float32)  # as combined_loss: >= float32
    rows = _FullSoftmaxRows.apply(
        state.to(dtype), items.to(dtype), labels, weights.to(dtype), is_negative,
        negatives_move_items,
    )  # (B,)  # fmt: skip
    positive = (rows * ~is_negative).sum() / batch
    not_to_recommend = (rows * is_negative).sum() / batch
    return LossTerms(positive + not_to_recommend, positive, not_to_recommend)
