"""Two DDP ranks (gloo, CPU) step exactly as one process on the same batches.

The ranks get unequal shares of each step, a rank sometimes none (it joins the
all-reduce with a zero gradient), once neither (both tick), and new items at most
steps (the tables grow, the same on both). One process trains on every step's
shares concatenated in rank order. Both ranks must end bitwise identical, and equal
to the single process within float tolerance (the all-reduce sums in another order).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.ddp_steps import ARM, SIZES, WORLD, plan, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_ranks(out: Path, accelerator: str) -> list[dict[str, Any]]:
    """Both ranks as separate processes; what each saved at the end."""
    port = _free_port()
    ranks = []
    for rank in range(WORLD):
        env = {
            **os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "WORLD_SIZE": str(WORLD), "NODE_RANK": "0", "LOCAL_RANK": str(rank),
            "OMP_NUM_THREADS": "1",
        }  # fmt: skip
        argv = [sys.executable, "-m", "tests.support.ddp_steps", str(out), accelerator]
        ranks.append(
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        )
    for process in ranks:
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output.decode()[-4000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_two_ranks_match_one_process_on_the_same_batches(tmp_path: Path) -> None:
    _check_against_one_process(_run_ranks(tmp_path, "cpu"), "cpu", atol=2e-5)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpu_ranks_over_nccl_match_one_process(tmp_path: Path) -> None:
    # new rows come from the CUDA generator, so the reference trains on a GPU too; NCCL
    # and GPU kernels sum in other orders: a looser tolerance
    _check_against_one_process(_run_ranks(tmp_path, "cuda"), "cuda", atol=2e-4)


def _check_against_one_process(
    results: list[dict[str, Any]], accelerator: str, atol: float
) -> None:
    module, state, step, _ = train(distributed=False, accelerator=accelerator)
    steps_with_rows = sum(1 for sizes in SIZES if sum(sizes) > 0)
    assert step == steps_with_rows == results[0]["step"] == results[1]["step"]
    assert results[0]["items"] == results[1]["items"] == state.vocabs.items.ids()
    assert results[0]["creators"] == results[1]["creators"] == state.vocabs.creators.ids()
    assert results[0]["meta"] == results[1]["meta"] == state.items_meta
    single = {k: v.cpu() for k, v in module.state_dict().items()}
    assert single["model.item_input.weight"].shape[0] == len(state.vocabs.items)
    assert set(results[0]["state_dict"]) == set(single)
    for name, value in single.items():
        first, second = results[0]["state_dict"][name], results[1]["state_dict"][name]
        assert torch.equal(first, second), f"{name} differs between the ranks"
        assert first.shape == value.shape, name
        assert torch.allclose(first.float(), value.float(), atol=atol, rtol=1e-4), (
            f"{name}: max difference {(first.float() - value.float()).abs().max():.3g}"
        )
    # every rank counted every rank's labels, dislikes among them (the items' offsets)
    counts = single["model.item_feedback"]
    trained = [
        e for step in plan() for rank in step for e in rank if e.label_kind in ARM.trained_kinds
    ]
    assert float(counts.sum()) == len(trained)
    assert float(counts[:, 1].sum()) == sum(e.label_kind == "dislike" for e in trained) > 0
    # the model moved: a comparison of two untrained models would prove nothing
    assert not torch.allclose(single["model.to_state.weight"], _initial()["model.to_state.weight"])


def _initial() -> dict[str, torch.Tensor]:
    from tests.support.ddp_steps import new_module

    return new_module().state_dict()
