"""Eq. 1 and its stable pieces: exact values, float64 agreement, finite gradients,
and sampled softmax converging to the full softmax."""

from __future__ import annotations

import math

import pytest
import torch

from learner.loss import (
    combined_loss,
    log_one_minus_prob,
    log_softmax_prob,
    not_to_recommend_loss,
    sampled_logits,
)

torch.set_num_threads(1)


def test_exact_values_on_a_hand_computed_case() -> None:
    # softmax([0, ln 2, ln 3]) = [1/6, 2/6, 3/6]
    logits = torch.tensor([[0.0, math.log(2), math.log(3)]] * 2)
    labels = torch.tensor([2, 0])
    assert log_softmax_prob(logits, labels).tolist() == pytest.approx(
        [math.log(1 / 2), math.log(1 / 6)], abs=1e-6
    )
    assert log_one_minus_prob(logits, labels).tolist() == pytest.approx(
        [math.log(1 / 2), math.log(5 / 6)], abs=1e-6
    )
    # row 0: positive, r = 1; row 1: not-to-recommend, w = 2; both divided by B = 2
    terms = combined_loss(logits, labels, torch.tensor([1.0, 2.0]), torch.tensor([False, True]))
    assert terms.positive.item() == pytest.approx(-math.log(1 / 2) / 2, abs=1e-6)
    assert terms.not_to_recommend.item() == pytest.approx(-2 * math.log(5 / 6) / 2, abs=1e-6)
    assert terms.total.item() == pytest.approx(
        terms.positive.item() + terms.not_to_recommend.item(), abs=1e-7
    )
    assert not_to_recommend_loss(logits, labels, torch.tensor([1.0, 2.0])).tolist() == (
        pytest.approx([-math.log(1 / 2), -2 * math.log(5 / 6)], abs=1e-6)
    )


def _reference(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Textbook formulas in float64 (fine at this precision for moderate logits)."""
    p = torch.softmax(logits.double(), dim=1).gather(1, labels[:, None]).squeeze(1)
    return p.log(), (1 - p).log()


def test_matches_float64_reference_values_and_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(16, 40, generator=gen) * 4).requires_grad_()
    labels = torch.randint(0, 40, (16,), generator=gen)
    weights = torch.rand(16, generator=gen) * 2
    is_negative = torch.rand(16, generator=gen) < 0.5
    ref = logits.detach().double().requires_grad_()
    log_p, log_1mp = _reference(ref, labels)
    assert torch.allclose(log_softmax_prob(logits, labels).double(), log_p, atol=1e-5)
    assert torch.allclose(log_one_minus_prob(logits, labels).double(), log_1mp, atol=1e-5)

    terms = combined_loss(logits, labels, weights, is_negative)
    w = weights.double()
    ref_total = -(w * log_p * ~is_negative).sum() / 16 - (w * log_1mp * is_negative).sum() / 16
    assert terms.total.item() == pytest.approx(ref_total.item(), abs=1e-5)
    terms.total.backward()
    ref_total.backward()
    assert logits.grad is not None and ref.grad is not None
    assert torch.allclose(logits.grad.double(), ref.grad, atol=1e-6)


@pytest.mark.parametrize("label_logit", [60.0, -60.0])  # p -> 1 and p -> 0
def test_gradients_stay_finite_at_the_extremes(label_logit: float) -> None:
    logits = torch.zeros(1, 10)
    logits[0, 3] = label_logit
    logits.requires_grad_()
    labels = torch.tensor([3])
    log_1mp = log_one_minus_prob(logits, labels)
    # exact: log(1-p) = logsumexp(others) - logsumexp(all) = log 9 - log(e^z + 9)
    expected = math.log(9) - (label_logit + math.log1p(9 * math.exp(-label_logit)))
    assert log_1mp.item() == pytest.approx(expected, rel=1e-5, abs=1e-12)
    (grad,) = torch.autograd.grad(log_1mp.sum(), logits)
    assert torch.isfinite(grad).all()
    # d log(1-p) / d z = softmax(z without y) - softmax(z); |entries| <= 1
    p = torch.softmax(logits.detach().double(), dim=1)
    others = torch.full((1, 10), 1 / 9, dtype=torch.float64)
    others[0, 3] = 0
    assert torch.allclose(grad.double(), others - p, atol=1e-6)

    log_p = log_softmax_prob(logits, labels)
    (grad_p,) = torch.autograd.grad(log_p.sum(), logits)
    assert torch.isfinite(grad_p).all()
    if label_logit > 0:  # the naive form underflows to log(0) where the stable one does not
        assert torch.isinf(torch.log(1 - torch.softmax(logits.detach(), 1)[0, 3]))


def test_weights_scale_terms_and_batch_size_normalises() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 12, generator=gen)
    labels = torch.randint(0, 12, (6,), generator=gen)
    negative = torch.tensor([False, True, False, True, False, False])
    one = combined_loss(logits, labels, torch.ones(6), negative)
    three = combined_loss(logits, labels, torch.full((6,), 3.0), negative)
    assert three.positive.item() == pytest.approx(3 * one.positive.item(), rel=1e-6)
    assert three.not_to_recommend.item() == pytest.approx(3 * one.not_to_recommend.item(), rel=1e-6)
    zero_neg = combined_loss(logits, labels, (~negative).float(), negative)
    assert zero_neg.not_to_recommend.item() == 0.0
    # the same rows twice: a per-example mean, so the loss does not change
    doubled = combined_loss(
        logits.repeat(2, 1), labels.repeat(2), torch.ones(12), negative.repeat(2)
    )
    assert doubled.total.item() == pytest.approx(one.total.item(), rel=1e-6)
    none_neg = combined_loss(logits, labels, torch.ones(6), torch.zeros(6, dtype=torch.bool))
    assert none_neg.not_to_recommend.item() == 0.0


def test_sampled_logits_layout_and_accidental_hits() -> None:
    gen = torch.Generator().manual_seed(2)
    state, items = torch.randn(3, 4, generator=gen), torch.randn(8, 4, generator=gen)
    labels = torch.tensor([2, 5, 2])
    out = sampled_logits(state, items, labels, 20, torch.full((8,), math.log(1 / 6)), gen)
    assert out.shape == (3, 1 + 3 + 20)
    assert torch.allclose(out[:, 0], (state * items[labels]).sum(1))
    # in-batch columns 1..3 hold labels [2, 5, 2]: row 0 and row 2 mask columns 1 and 3
    assert torch.isinf(out[0, [1, 3]]).all() and torch.isfinite(out[0, 2])
    assert torch.isinf(out[1, 2]) and torch.isfinite(out[1, [1, 3]]).all()
    # expected count of each in-batch/uniform candidate: 3 * 1/6 + 20/6
    correction = math.log(3 / 6 + 20 / 6)
    assert out[1, 1].item() == pytest.approx((state[1] @ items[2]).item() - correction, abs=1e-5)


def test_sampled_softmax_converges_to_full_softmax() -> None:
    gen = torch.Generator().manual_seed(3)
    num_items, first = 60, 2
    state = torch.randn(32, 8, generator=gen)
    items = torch.randn(num_items, 8, generator=gen)
    labels = torch.randint(first, num_items, (32,), generator=gen)
    weights = torch.ones(32)
    negative = torch.arange(32) % 3 == 0
    full = combined_loss(state @ items[first:].T, labels - first, weights, negative)
    counts = torch.bincount(labels, minlength=num_items).float() + 1.0
    log_q = (counts / counts.sum()).log()
    errors = []
    for m in (8, 128, 4096, 65536):
        err = []
        for seed in range(4):
            sample_gen = torch.Generator().manual_seed(seed)
            logits = sampled_logits(state, items, labels, m, log_q, sample_gen, first)
            terms = combined_loss(logits, torch.zeros_like(labels), weights, negative)
            err.append(
                abs(terms.positive - full.positive).item()
                + abs(terms.not_to_recommend - full.not_to_recommend).item()
            )
        errors.append(sum(err) / len(err))
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 0.02 * full.total.item()
    # uniform samples alone (no in-batch items, no log-Q) converge too
    logits = sampled_logits(state, items, labels, 65536, None, torch.Generator().manual_seed(9))
    alone = combined_loss(logits, torch.zeros_like(labels), weights, negative)
    assert alone.total.item() == pytest.approx(full.total.item(), rel=0.02)


def test_sampled_loss_gradient_is_finite() -> None:
    gen = torch.Generator().manual_seed(4)
    state = (torch.randn(4, 8, generator=gen) * 10).requires_grad_()
    items = torch.randn(20, 8, generator=gen).requires_grad_()
    labels = torch.tensor([2, 3, 4, 5])
    logits = sampled_logits(state, items, labels, 16, None, gen)
    terms = combined_loss(logits, torch.zeros(4, dtype=torch.long), torch.ones(4),
                          torch.tensor([True, True, False, False]))  # fmt: skip
    terms.total.backward()
    assert state.grad is not None and torch.isfinite(state.grad).all()
    assert items.grad is not None and torch.isfinite(items.grad).all()


def test_sampled_loss_without_negative_rows_is_finite() -> None:
    """A batch of positives only, where an in-batch candidate hits a row's label (a
    masked -inf logit): the absent not-to-recommend term is 0, not -inf * 0 = NaN."""
    gen = torch.Generator().manual_seed(5)
    state = torch.randn(3, 8, generator=gen, requires_grad=True)
    items = torch.randn(20, 8, generator=gen)
    labels = torch.tensor([2, 5, 2])  # row 0's label is row 2's candidate: masked
    logits = sampled_logits(state, items, labels, 16, None, gen)
    assert torch.isinf(logits).any()
    terms = combined_loss(logits, torch.zeros(3, dtype=torch.long), torch.ones(3),
                          torch.zeros(3, dtype=torch.bool))  # fmt: skip
    assert terms.not_to_recommend.item() == 0.0
    assert torch.isfinite(terms.total)
    terms.total.backward()
    assert state.grad is not None and torch.isfinite(state.grad).all()
