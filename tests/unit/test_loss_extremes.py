"""``combined_loss`` itself at extreme logits: training calls only this function,
so its masked ``log(1 - p)`` path must be the stable one, not ``log(1 - softmax)``.

Expected values are closed forms in float64 (``math.log1p``/``math.exp``), derived
independently of the code: for one row of N logits with the label at z and the
other N - 1 at 0,

    log p       = z - log(e^z + N - 1)       = -log1p((N - 1) e^-z)
    log(1 - p)  = log(N - 1) - log(e^z + N - 1)
                = log(N - 1) - z - log1p((N - 1) e^-z)
    d/dz_j -log(1 - p) = p_j - q_j,  q = softmax over the others (label masked)
"""

from __future__ import annotations

import math

import pytest
import torch

from learner.loss import combined_loss, sampled_logits

torch.set_num_threads(1)

N = 10  # items per row


def _row(label_logit: float) -> torch.Tensor:
    logits = torch.zeros(1, N)
    logits[0, 3] = label_logit
    return logits.requires_grad_()


def _log_one_minus_p(z: float) -> float:
    return math.log(N - 1) - z - math.log1p((N - 1) * math.exp(-z))


def _softmax64(z: float) -> list[float]:
    # the label at column 3, zeros elsewhere; written with e^-z so z = 1000 does not overflow
    other = math.exp(-z) / (1 + (N - 1) * math.exp(-z)) if z > 0 else 1 / (math.exp(z) + N - 1)
    label = 1 - (N - 1) * other if z > 0 else math.exp(z) * other
    return [label if j == 3 else other for j in range(N)]


@pytest.mark.parametrize("z", [30.0, 60.0, 100.0, 1000.0])  # p -> 1 in float32 from ~17
def test_negative_label_loss_and_gradient_stay_finite_as_p_goes_to_one(z: float) -> None:
    logits = _row(z)
    weight = 2.0
    terms = combined_loss(logits, torch.tensor([3]), torch.tensor([weight]), torch.tensor([True]))
    # the naive form is log(1 - 1) = -inf here; the stable one is ~ log 9 - z
    expected = -weight * _log_one_minus_p(z)
    assert math.isfinite(terms.total.item())
    assert terms.not_to_recommend.item() == pytest.approx(expected, rel=1e-6)
    assert terms.positive.item() == 0.0
    assert terms.total.item() == pytest.approx(expected, rel=1e-6)
    (grad,) = torch.autograd.grad(terms.total, logits)
    assert torch.isfinite(grad).all()
    # d(-w log(1-p))/dz = w (p - q): the label's entry -> w, each other -> w (0 - 1/9)
    p = _softmax64(z)
    q = [0.0 if j == 3 else 1 / (N - 1) for j in range(N)]
    expected_grad = [weight * (p[j] - q[j]) for j in range(N)]
    assert grad[0].tolist() == pytest.approx(expected_grad, abs=1e-6)


@pytest.mark.parametrize("z", [-30.0, -60.0, -100.0])  # p -> 0: -log(1 - p) -> p ~ 0
def test_negative_label_at_p_near_zero_costs_nothing_and_pushes_nothing(z: float) -> None:
    logits = _row(z)
    terms = combined_loss(logits, torch.tensor([3]), torch.tensor([1.0]), torch.tensor([True]))
    p = math.exp(z) / (math.exp(z) + N - 1)
    assert terms.not_to_recommend.item() == pytest.approx(-math.log1p(-p), abs=1e-6)
    (grad,) = torch.autograd.grad(terms.total, logits)
    # p - q with p = (~0 at the label, ~1/9 elsewhere) and q = (0, 1/9 ...): all ~ 0
    assert grad[0].tolist() == pytest.approx([0.0] * N, abs=1e-6)


@pytest.mark.parametrize("z", [60.0, -60.0])
def test_positive_label_at_the_extremes(z: float) -> None:
    logits = _row(z)
    terms = combined_loss(logits, torch.tensor([3]), torch.tensor([1.5]), torch.tensor([False]))
    expected = 1.5 * math.log1p((N - 1) * math.exp(-z))  # -r log p
    assert terms.positive.item() == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert terms.not_to_recommend.item() == 0.0
    (grad,) = torch.autograd.grad(terms.total, logits)
    p = _softmax64(z)
    onehot = [1.0 if j == 3 else 0.0 for j in range(N)]
    assert grad[0].tolist() == pytest.approx([1.5 * (p[j] - onehot[j]) for j in range(N)], abs=1e-6)


def test_mixed_batch_at_the_extremes_matches_closed_forms_row_by_row() -> None:
    # four rows: negatives at p ~ 1 and p ~ 0, positives at p ~ 1 and p ~ 0; B = 4
    zs = [80.0, -80.0, 80.0, -80.0]
    logits = torch.zeros(4, N)
    logits[:, 3] = torch.tensor(zs)
    logits.requires_grad_()
    weights = torch.tensor([1.0, 3.0, 0.5, 2.0])
    negative = torch.tensor([True, True, False, False])
    terms = combined_loss(logits, torch.full((4,), 3), weights, negative)
    # the p ~ 0 negative row contributes -3 log(1 - p), p = e^-80 / (e^-80 + 9) ~ 2e-36
    neg = -1.0 * _log_one_minus_p(80.0) + 3.0 * (math.exp(-80.0) / 9)
    pos = 0.5 * math.log1p(9 * math.exp(-80.0)) + 2.0 * math.log1p(9 * math.exp(80.0))
    assert terms.not_to_recommend.item() == pytest.approx(neg / 4, rel=1e-6)
    assert terms.positive.item() == pytest.approx(pos / 4, rel=1e-6)
    assert terms.total.item() == pytest.approx((neg + pos) / 4, rel=1e-6)
    terms.total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    # the p ~ 1 negative row pushes its label down with slope w / B, the others up
    assert logits.grad[0, 3].item() == pytest.approx(1.0 / 4, rel=1e-6)
    assert logits.grad[0, 0].item() == pytest.approx(-1.0 / 9 / 4, rel=1e-6)


def test_empty_batch_gives_differentiable_zeros() -> None:
    logits = torch.zeros(0, N, requires_grad=True)
    empty_long = torch.zeros(0, dtype=torch.long)
    terms = combined_loss(logits, empty_long, torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    assert [t.item() for t in terms] == [0.0, 0.0, 0.0]
    terms.total.backward()  # still in the graph: an empty batch does not break a step
    assert logits.grad is not None and logits.grad.shape == (0, N)


def test_sampled_logits_validates_its_arguments() -> None:
    state, labels = torch.zeros(1, 4), torch.tensor([2])
    with pytest.raises(ValueError, match="need items beyond row 2 and num_uniform >= 0"):
        sampled_logits(state, torch.zeros(2, 4), labels, 3)  # no item beyond the padding
    with pytest.raises(ValueError, match="num_uniform >= 0"):
        sampled_logits(state, torch.zeros(5, 4), labels, -1)
    # the smallest valid cases: one real item, and no uniform samples at all
    assert sampled_logits(state, torch.zeros(3, 4), labels, 2).shape == (1, 1 + 2)
    assert sampled_logits(state, torch.zeros(5, 4), labels, 0).shape == (1, 1)


def test_sampled_logits_draws_from_the_generator_and_never_padding_rows() -> None:
    gen = torch.Generator().manual_seed(7)
    state = torch.randn(2, 4, generator=gen)
    items = torch.randn(30, 4, generator=gen)
    items[:2] = math.nan  # rows 0 and 1 are padding/unknown: a draw of one shows as NaN
    labels = torch.tensor([5, 9])

    def draw(seed: int) -> torch.Tensor:
        return sampled_logits(state, items, labels, 64, None, torch.Generator().manual_seed(seed))

    first, again, other = draw(1), draw(1), draw(2)
    assert not torch.isnan(first).any() and not torch.isnan(other).any()
    assert torch.equal(first, again)  # the seed alone decides the draws
    assert not torch.equal(first, other)


def test_sampled_logits_stay_on_the_inputs_device() -> None:
    # "meta" tensors stand in for an accelerator: every intermediate must follow the
    # inputs' device (a CPU tensor mixed in fails), without a GPU on this machine
    state, items = torch.zeros(3, 4, device="meta"), torch.zeros(10, 4, device="meta")
    labels = torch.tensor([2, 5, 7], device="meta")
    gen = torch.Generator().manual_seed(1)
    uniform_only = sampled_logits(state, items, labels, 6, None, gen)
    assert (uniform_only.device.type, uniform_only.shape) == ("meta", (3, 7))
    log_q = torch.full((10,), -2.3, device="meta")
    mixed = sampled_logits(state, items, labels, 6, log_q, gen)
    assert (mixed.device.type, mixed.shape) == ("meta", (3, 10))


def test_sampled_logits_draw_on_the_cpu_whatever_the_default_device() -> None:
    # the draws use the CPU generator on the CPU, so a seed gives the same candidates
    # whatever torch's default device is
    gen = torch.Generator().manual_seed(3)
    state, items = torch.randn(3, 4, generator=gen), torch.randn(10, 4, generator=gen)
    labels = torch.tensor([2, 5, 7])
    plain = sampled_logits(state, items, labels, 6, None, torch.Generator().manual_seed(1))
    with torch.device("meta"):
        other_default = sampled_logits(
            state, items, labels, 6, None, torch.Generator().manual_seed(1)
        )
    assert torch.equal(plain, other_default)
