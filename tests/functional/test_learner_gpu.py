"""The learner on CUDA: a few real training steps and serving on the GPU.

Skipped cleanly where no CUDA device is present.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learner.loss import combined_loss, sampled_logits
from learner.model import ModelConfig
from learner.offline import TrainConfig, train_offline
from learner.synthetic import synthetic_examples

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("softmax", ["full", "sampled"])
def test_trains_on_cuda_and_serves_the_same_on_cpu_and_gpu(softmax: str) -> None:
    examples = synthetic_examples(num_users=40, events_per_user=60, num_items=60, num_clusters=6)
    model = ModelConfig(embedding_dim=16, hidden_dim=16, max_len=10, dropout=0.0)
    train = TrainConfig(max_steps=40, batch_size=64, lr=3e-2, softmax=softmax,  # type: ignore[arg-type]
                        num_sampled=32, accelerator="cuda")  # fmt: skip
    rec = train_offline(examples, "feature_and_labels", model, train, progress=False)
    assert rec.report is not None and rec.report.steps == 40
    losses = [loss for _, loss in rec.report.loss_curve]
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    histories = [e.history for e in examples[:50]]
    on_cpu = rec.scores(histories)
    rec.model.to("cuda")
    on_gpu = rec.scores(histories)
    assert np.allclose(on_cpu, on_gpu, atol=1e-4)
    assert rec.top_k(histories, 3, exclude_seen=True)[0]


def test_sampled_logits_on_cuda_match_cpu_for_the_same_seed() -> None:
    gen = torch.Generator().manual_seed(0)
    state, items = torch.randn(8, 4, generator=gen), torch.randn(30, 4, generator=gen)
    labels = torch.randint(2, 30, (8,), generator=gen)
    log_q = torch.full((30,), math.log(1 / 28))
    cpu = sampled_logits(state, items, labels, 64, log_q, torch.Generator().manual_seed(1))
    gpu = sampled_logits(state.cuda(), items.cuda(), labels.cuda(), 64, log_q.cuda(),
                         torch.Generator().manual_seed(1))  # fmt: skip
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-5)
    zeros = torch.zeros(8, dtype=torch.long)
    negative = torch.arange(8) % 2 == 0
    a = combined_loss(cpu, zeros, torch.ones(8), negative).total
    b = combined_loss(gpu, zeros.cuda(), torch.ones(8).cuda(), negative.cuda()).total
    assert a.item() == pytest.approx(b.item(), abs=1e-5)
