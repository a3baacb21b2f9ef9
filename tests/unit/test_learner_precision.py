"""bf16-mixed: the encoder in bfloat16, the loss and every weight in float32.

The loss (a softmax over every item) stays in float32 under autocast, so its value
and gradients stay close to float32 training's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learner.continuous import _new_module
from learner.continuous_loop import LearnerConfig
from learner.features import encode_examples
from learner.offline import TrainConfig
from learner.vocab import Vocabularies
from tests.unit.test_learner_example_decoder import _examples


def test_an_unknown_precision_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision must be one of 32-true, bf16-mixed"):
        LearnerConfig(store=tmp_path, checkpoint_dir=tmp_path, precision="auto")  # type: ignore[arg-type]  # wrong on purpose
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="bf16")  # type: ignore[arg-type]  # wrong on purpose


def _loss_and_grads(config: LearnerConfig, bf16: bool) -> tuple[float, dict[str, torch.Tensor]]:
    vocabs = Vocabularies()
    batch = encode_examples(
        _examples(users=8, per_user=40), vocabs, config.model.max_len, "feature_and_labels"
    )
    module = _new_module(config)
    module.grow_items(len(vocabs.items), None)
    module.grow_creators(len(vocabs.creators), None)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        terms = module.loss_terms(batch, sampled=False)
    assert terms.total.dtype == torch.float32  # the loss ran in float32 even so
    terms.total.backward()
    grads = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
    assert all(g.dtype == torch.float32 for g in grads.values())  # float32 weights
    return float(terms.total.detach()), grads


def test_a_bf16_mixed_step_stays_close_to_float32(tmp_path: Path) -> None:
    config = LearnerConfig(store=tmp_path, checkpoint_dir=tmp_path)
    loss32, grads32 = _loss_and_grads(config, bf16=False)
    loss16, grads16 = _loss_and_grads(config, bf16=True)
    assert loss16 == pytest.approx(loss32, rel=1e-3)
    assert grads16.keys() == grads32.keys()
    for name, grad in grads32.items():
        error = (grads16[name] - grad).norm() / grad.norm().clamp_min(1e-12)
        assert error < 0.05, name  # bfloat16 carries ~3 significant digits
