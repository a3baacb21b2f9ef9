"""How fast this CPU multiplies the learner's matrices, in float32 and in bfloat16.

    python scripts/gemm_rates.py [--threads 1] [--batch 1024] [--catalogue 5000]

Times the products a training step of the live model makes (a GRU with D = H = 64
over 30 history items, a full softmax over the catalogue) one at a time, in each
dtype, and prints microseconds and multiply-adds per second. On the 2-core AMD EPYC
of this project's sessions float32 (MKL) ran 22-45 GMAC/s whatever the shape, and
bfloat16 (oneDNN, avx512_bf16) 126-196: the figures behind docs/streams.md, "The
step per trained example". Not a ``recoil bench`` command: a look at the hardware.
"""

from __future__ import annotations

import argparse
import time

import torch

T, D, H = 30, 64, 64  # the live model's history length, embedding and hidden widths


def shapes(batch: int, catalogue: int) -> list[tuple[str, int, int, int]]:
    """(what, m, k, n) of the step's products, as (m x k) @ (k x n)."""
    rows = T * batch
    return [
        ("GRU input projection, all steps", rows, D, 3 * H),
        ("GRU hidden product, one step", batch, H, 3 * H),
        ("GRU weight gradient, all steps", 3 * H, rows, H),
        ("GRU input gradient, all steps", rows, 3 * H, D),
        ("scores over the catalogue", batch, D, catalogue),
        ("item-table gradient", catalogue, batch, D),
    ]


def seconds_per_product(m: int, k: int, n: int, dtype: torch.dtype) -> float:
    """Best of five timings of (m x k) @ (k x n), each repeated to last ~50 ms."""
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    a @ b  # first call: library dispatch and allocation
    repeats = max(3, int(5e7 // (m * k * n) * 40))
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.perf_counter() - started) / repeats)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--catalogue", type=int, default=5000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = [torch.float32]
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        dtypes.append(torch.bfloat16)
    else:
        print("bfloat16: this CPU has no native support (oneDNN would emulate it); skipped")
    blas = "MKL" if torch.backends.mkl.is_available() else "not MKL"
    print(f"{args.threads} thread(s), float32 products through {blas}")
    for what, m, k, n in shapes(args.batch, args.catalogue):
        cells = []
        for dtype in dtypes:
            s = seconds_per_product(m, k, n, dtype)
            cells.append(f"{str(dtype).removeprefix('torch.')} {s * 1e6:8.0f} us "
                         f"{m * k * n / s / 1e9:6.1f} GMAC/s")  # fmt: skip
        print(f"{what:34s} ({m} x {k}) @ ({k} x {n}):  " + " | ".join(cells))


if __name__ == "__main__":
    main()
