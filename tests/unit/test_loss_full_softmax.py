"""``full_softmax_loss``: the same Eq. 1 as ``combined_loss`` over every item, with a
hand-written backward; its value and gradients must match autograd's exactly enough."""

from __future__ import annotations

import pytest
import torch

from learner.loss import combined_loss, full_softmax_loss

torch.set_num_threads(1)


def _case(
    rows: int, items: int, dim: int, negative_share: float, seed: int, scale: float = 1.0
) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    state = (torch.randn(rows, dim, generator=gen, dtype=torch.float64) * scale).requires_grad_()
    table = torch.randn(items, dim, generator=gen, dtype=torch.float64).requires_grad_()
    labels = torch.randint(0, items, (rows,), generator=gen)
    weights = torch.rand(rows, generator=gen, dtype=torch.float64) * 2
    is_negative = torch.rand(rows, generator=gen) < negative_share
    return state, table, labels, weights, is_negative


def _reference(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, is_negative: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, not_to_recommend) by the textbook formulas, in float64 through autograd
    (``combined_loss`` itself computes in float32)."""
    log_p = torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    log_1mp = torch.log1p(-log_p.exp())
    batch = logits.shape[0]
    positive = -(weights * log_p * ~is_negative).sum() / batch
    return positive, -(weights * log_1mp * is_negative).sum() / batch


@pytest.mark.parametrize("negative_share", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_same_terms_and_gradients_as_autograd(negative_share: float, seed: int) -> None:
    state, table, labels, weights, is_negative = _case(24, 50, 8, negative_share, seed)
    fused = full_softmax_loss(state, table, labels, weights, is_negative)
    positive, not_to_recommend = _reference(state @ table.T, labels, weights, is_negative)
    assert fused.positive.item() == pytest.approx(positive.item(), rel=1e-12, abs=1e-14)
    assert fused.not_to_recommend.item() == pytest.approx(
        not_to_recommend.item(), rel=1e-12, abs=1e-14
    )
    assert fused.total.item() == pytest.approx((positive + not_to_recommend).item(), rel=1e-12)
    # a mix of the terms, so each term's gradient is checked with its own factor
    fused_grads = torch.autograd.grad(
        fused.positive * 1.7 + fused.not_to_recommend * 0.3, (state, table)
    )
    reference_grads = torch.autograd.grad(positive * 1.7 + not_to_recommend * 0.3, (state, table))
    for a, b in zip(fused_grads, reference_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-13)
    # and the float32 path agrees with combined_loss, which the sampled mode still uses
    plain = combined_loss(state.detach() @ table.detach().T, labels, weights, is_negative)
    assert plain.total.item() == pytest.approx(fused.total.item(), rel=1e-5)


def test_a_second_backward_through_the_same_graph_fails_loudly() -> None:
    # The backward writes the gradient over the saved logits: a retained graph cannot be
    # walked twice, and torch says so instead of returning a wrong gradient.
    state, table, labels, weights, is_negative = _case(6, 9, 3, 0.5, seed=2)
    total = full_softmax_loss(state, table, labels, weights, is_negative).total
    total.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        total.backward()


def test_float32_gradients_finite_when_a_disliked_item_is_certain() -> None:
    # p(y) -> 1 on the negative rows: log(1 - p) is very negative but stays finite, and the
    # gradient (P - Q per entry) is bounded by 1 whatever the logits.
    state, table, labels, weights, is_negative = _case(8, 20, 4, 1.0, seed=3)
    state = state.detach().float()
    table = table.detach().float()
    table[labels] = state * 40  # the label's logit dwarfs every other
    state.requires_grad_()
    table.requires_grad_()
    terms = full_softmax_loss(state, table, labels, weights.float(), is_negative)
    assert torch.isfinite(terms.total)
    terms.total.backward()
    assert state.grad is not None and table.grad is not None
    assert torch.isfinite(state.grad).all() and torch.isfinite(table.grad).all()


def test_an_empty_batch_is_zero_and_keeps_the_graph() -> None:
    table = torch.randn(5, 3, requires_grad=True)
    state = torch.zeros(0, 3, requires_grad=True)
    empty = torch.zeros(0, dtype=torch.long)
    terms = full_softmax_loss(state, table, empty, torch.zeros(0), empty.bool())
    assert terms.total.item() == 0.0
    terms.total.backward()
    assert table.grad is not None and float(table.grad.abs().sum()) == 0.0
