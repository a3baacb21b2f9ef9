"""Each item's share of not-to-recommend labels, as an offset to its ranking score.

Eq. 1's not-to-recommend term moves an item's score only where the model already
ranks the item high (its gradient on the item's logit is ``w * p``), and an item's
handful of dislikes is outweighed by the ~100,000 positive rows whose softmax sets
its overall level. So no arm learned the items' own dislike propensity: every
arm's top 10 had the catalogue's mean propensity (docs/experiment.md, "Dislikes
weighted 50"), although in real logs it spreads widely (the items' dislike log-odds
have a standard deviation of 1.75 in MovieLens and 1.17 in KuaiRand).

The model therefore keeps, per item, how many positive and not-to-recommend labels
it trained on, and estimates the item's share of not-to-recommend labels under a
Beta prior centred on the catalogue's share ``q̄`` with ``prior`` pseudo-labels:

    q_j = (n_j + prior * q̄) / (n_j + p_j + prior)

Ranking adds ``weight * log((1 - q_j) / (1 - q̄))`` to ``s·v_j``: an item disliked as
often as the catalogue's average, or never labelled, keeps its score, and an item
disliked by half of those who reacted to it loses ``weight * log(0.5 / (1 - q̄))``.
The offset is not part of the training softmax, where the item rows would learn to
cancel it. It rides as one more coordinate of each item's vector (and a 1 in the
query's), so a FAISS inner-product index ranks exactly as ``scores`` does.
"""

from __future__ import annotations

import torch
from torch import Tensor

# the largest share either estimate may take: at 1 the log is -inf (every label a dislike)
_MAX_SHARE = 1.0 - 1e-6


def feedback_offsets(counts: Tensor, weight: float, prior: float) -> Tensor:
    """``weight * log((1 - q_j) / (1 - q̄))`` per row of ``counts`` (N, 2), whose columns
    count positive and not-to-recommend labels; 0 everywhere before any dislike."""
    counts = counts.double()
    positives, negatives = counts[:, 0], counts[:, 1]
    total = counts.sum()
    share = (negatives.sum() / total if total > 0 else counts.new_zeros(())).clamp(max=_MAX_SHARE)
    q = ((negatives + prior * share) / (positives + negatives + prior).clamp_min(1e-12)).clamp(
        max=_MAX_SHARE
    )
    # an item with no label and prior 0 has 0 / 0: it keeps the catalogue's share
    q = torch.where(positives + negatives + prior > 0, q, share)
    return (weight * (torch.log1p(-q) - torch.log1p(-share))).float()
