"""Which arithmetic the learner's products run in: Lightning's ``precision`` setting.

``32-true`` (the default) trains in float32. ``bf16-mixed`` keeps every weight, the
optimizer and the loss in float32 and runs the encoder's products (the GRU, the
input and state maps) in bfloat16 under autocast; the loss, a softmax over every
item, stays in float32 whatever the setting (``learner.module``).

Measured on this repository's 2-core CPU, which multiplies bfloat16 natively
(AVX512-BF16; docs/streams.md, "The label header, a frozen heap, bfloat16"):

- one step of 1,024 trained rows: 22% less time; the learner's steps from memory
  (``bench.learner_profile``): 3-15% less. oneDNN's bfloat16 products run at 4-5x MKL's
  float32 rate (``scripts/gemm_rates.py``), but autocast's casts take some back;
- ``recoil bench pipeline``: no gain (the learner used 162-163 µs of CPU an example
  against 151-153 in float32), with the worker on the other core;
- the experiment's feature_and_labels arm (medium world, seeds 0-2): Recall@20 2.4%
  lower on average (0.4-5.1%, lower on every seed), responsiveness the same or stronger,
  offline training 15% faster.

So float32 stays the default; bf16-mixed is there for GPUs and CPUs where it pays.
Without native bfloat16 products it is emulated and slower than float32.
"""

from __future__ import annotations

from typing import Literal

Precision = Literal["32-true", "bf16-mixed"]
PRECISIONS: tuple[Precision, ...] = ("32-true", "bf16-mixed")


def check_precision(precision: str) -> None:
    """Raise ValueError unless ``precision`` is one of ``PRECISIONS`` (config checks)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
