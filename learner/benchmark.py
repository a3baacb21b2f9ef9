"""Learner benchmark: encoding and training speed, and tied vs separate item embeddings.

    python -m learner.benchmark --out bench-out [--users 2000 --steps 100 --rounds 3
                                                 --quality-steps 600]

Every speed is printed as a ratio against a reference measured in the same run
(so the numbers compare across machines): encoding against a plain per-item
Python encoder, training variants against GRU + full softmax at the default
sizes. Quality (Recall@10 of each user's held-out last positive) compares tied
and separate output embeddings. Writes ``learner_benchmark.json`` and a PNG of
the loss curves to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learner.arms import resolve_arm
from learner.features import encode_examples
from learner.model import ModelConfig
from learner.offline import TrainConfig, TrainedRecommender, train_offline
from learner.synthetic import synthetic_examples
from learner.vocab import Vocabularies
from recoil.core.records import TrainingExample

log = logging.getLogger("learner.benchmark")


def naive_encode(examples: Sequence[TrainingExample], vocabs: Vocabularies, max_len: int) -> int:
    """Reference: one Python pass per history item, as a straightforward encoder would."""
    rows = np.zeros((len(examples), 5, max_len), dtype=np.int64)
    for b, example in enumerate(examples):
        for t, h in enumerate(example.history[-max_len:]):
            rows[b, :, t] = (
                vocabs.items.index(h.item_id), vocabs.creators.index(h.creator_id),
                int(h.disliked), h.dwell_bucket, h.gap_bucket,
            )  # fmt: skip
    return int(rows.sum() > -1)


def split_last_positive(
    examples: Sequence[TrainingExample],
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """Each user's last positive example is held out; everything before it trains."""
    last: dict[str, int] = {}
    for i, e in enumerate(examples):
        if e.label_kind == "positive":
            last[e.user_id] = i
    held = set(last.values())
    cutoff = {examples[i].user_id: examples[i].timestamp for i in held}
    train = [e for e in examples if e.timestamp < cutoff.get(e.user_id, float("inf"))]
    return train, [examples[i] for i in sorted(held)]


def recall_at(rec: TrainedRecommender, test: Sequence[TrainingExample], k: int) -> float:
    top = rec.top_k([e.history for e in test], k, exclude_seen=False)
    return float(np.mean([e.label_item_id in t for e, t in zip(test, top, strict=True)]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--users", type=int, default=2000, help="synthetic users (x250 events)")
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=100, help="steps per speed measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds")
    parser.add_argument("--quality-steps", type=int, default=600, help="steps per quality run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    threads = {"num_threads": args.threads}
    args.out.mkdir(parents=True, exist_ok=True)

    log.info("generating %d users x 250 events over %d items", args.users, args.items)
    examples = synthetic_examples(args.users, 250, num_items=args.items, num_clusters=50)
    defaults = ModelConfig()
    result: dict[str, Any] = {"examples": len(examples), "threads": args.threads}

    subset = examples[: min(len(examples), 50_000)]
    started = time.perf_counter()
    naive_encode(subset, Vocabularies(), defaults.max_len)
    naive = time.perf_counter() - started
    started = time.perf_counter()
    encode_examples(subset, Vocabularies(), defaults.max_len, resolve_arm("feature_labels_skips"))
    fast = time.perf_counter() - started
    result["encode"] = {
        "examples_per_second": len(subset) / fast,
        "reference_examples_per_second": len(subset) / naive,
        "speedup_vs_reference": naive / fast,
    }
    log.info("encode: %.0f examples/s, %.1fx the per-item reference",
             len(subset) / fast, naive / fast)  # fmt: skip

    variants = {
        "gru_full (reference)": (defaults, TrainConfig(max_steps=args.steps, **threads)),
        "gru_sampled_1024": (defaults,
                             TrainConfig(max_steps=args.steps, softmax="sampled", **threads)),
        "gru_max_len_50": (dataclasses.replace(defaults, max_len=50),
                           TrainConfig(max_steps=args.steps, **threads)),
        "sasrec_full": (dataclasses.replace(defaults, encoder="sasrec"),
                        TrainConfig(max_steps=args.steps, **threads)),
    }  # fmt: skip
    # Rounds interleave the variants and the best round counts (as timeit does): on a
    # shared machine, other work slows some rounds, and never speeds any up.
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        for name, (model, train) in variants.items():
            rec = train_offline(examples, "feature_and_labels", model, train, progress=False)
            assert rec.report is not None
            rates[name].append(rec.report.steps_per_second)
            log.info("round %d %-22s %.1f steps/s", round_, name, rates[name][-1])
    reference = max(rates["gru_full (reference)"])
    speed: dict[str, dict[str, Any]] = {
        name: {"steps_per_second": max(r), "ratio_vs_reference": max(r) / reference, "rounds": r}
        for name, r in rates.items()
    }
    for name, v in speed.items():
        log.info("%-22s best %.1f steps/s (%.2fx reference)", name, max(rates[name]),
                 v["ratio_vs_reference"])  # fmt: skip
    result["train_speed"] = speed
    result["seconds_for_default_max_steps"] = TrainConfig().max_steps / reference

    train_set, test = split_last_positive(examples)
    quality: dict[str, dict[str, Any]] = {}
    for name, model in {
        "separate_output_embeddings": defaults,
        "tied_embeddings": dataclasses.replace(defaults, tie_embeddings=True),
    }.items():
        config = TrainConfig(max_steps=args.quality_steps, **threads)
        rec = train_offline(train_set, "feature_and_labels", model, config, progress=False)
        assert rec.report is not None
        quality[name] = {
            "recall_at_10": recall_at(rec, test, 10),
            "final_loss": rec.report.loss_curve[-1][1],
            "loss_curve": rec.report.loss_curve,
        }
        log.info("%-28s Recall@10 %.4f", name, quality[name]["recall_at_10"])
    result["quality"] = quality
    result["quality_held_out_users"] = len(test)

    (args.out / "learner_benchmark.json").write_text(json.dumps(result, indent=2))
    _plot(quality, args.out / "learner_benchmark_loss.png")
    log.info("wrote %s", args.out)
    return 0


def _plot(quality: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, q in quality.items():
        steps, losses = zip(*q["loss_curve"], strict=True)
        ax.plot(steps, losses, label=f"{name} (R@10 {q['recall_at_10']:.3f})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (Eq. 1)")
    ax.set_title("feature_and_labels on synthetic data")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
