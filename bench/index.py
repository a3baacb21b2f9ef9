"""FAISS item index benchmark: exact (IndexFlatIP) vs IVF, speed and recall by corpus size.

    python bench/index.py --out bench-out [--sizes 20000,50000,100000 --dim 64
                                           --queries 200 --threads 1]

For each corpus size (clustered embeddings, like a trained item table) it builds
both index kinds with ``learner.index.build_index`` and reports, per kind: build
seconds, single-query latency (serving asks one history at a time) and batched
throughput, and IVF's recall@10 against exact search on held-out queries. Speed
is printed as a ratio against the exact index measured in the same run, so the
numbers compare across machines. Writes ``index_benchmark.json`` and
``index_benchmark.png`` to ``--out``. The exact/IVF threshold in
``learner/index.py`` (``IndexConfig.exact_max_items``) comes from these numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import faiss
import matplotlib
import numpy as np

from learner.index import IndexConfig, ItemIndex, build_index, recall_against_exact

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the Agg backend

log = logging.getLogger("bench.index")


def clustered(num: int, dim: int, seed: int) -> np.ndarray:
    """Embeddings around sqrt(num) centres, unit-scale, float32."""
    rng = np.random.default_rng(seed)
    clusters = max(1, int(np.sqrt(num)))
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    which = rng.integers(0, clusters, size=num)
    return (centres[which] + 0.3 * rng.normal(size=(num, dim))).astype(np.float32)


def single_query_seconds(index: ItemIndex, queries: np.ndarray, k: int) -> float:
    """Median latency of one-query searches."""
    times = []
    for q in queries:
        started = time.perf_counter()
        index.search(q[None, :], k)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def batch_seconds_per_query(index: ItemIndex, queries: np.ndarray, k: int) -> float:
    started = time.perf_counter()
    index.search(queries, k)
    return (time.perf_counter() - started) / len(queries)


def measure(size: int, dim: int, num_queries: int, k: int, seed: int) -> dict[str, Any]:
    emb = clustered(size, dim, seed)
    queries = clustered(2 * num_queries, dim, seed + 1)
    tune, held_out = queries[:num_queries], queries[num_queries:]
    row: dict[str, Any] = {"size": size, "dim": dim}
    for kind in ("flat", "ivf"):
        started = time.perf_counter()
        index = build_index(emb, config=IndexConfig(kind=kind), queries=tune)
        row[f"{kind}_build_seconds"] = time.perf_counter() - started
        row[f"{kind}_single_query_seconds"] = single_query_seconds(index, held_out, k)
        row[f"{kind}_batch_seconds_per_query"] = batch_seconds_per_query(index, held_out, k)
        row[f"{kind}_recall_at_{k}"] = recall_against_exact(index, emb, held_out, k)
        if kind == "ivf":
            row["ivf_nprobe"] = index.nprobe
            row["ivf_nlist"] = index.info["nlist"]
    row["ivf_single_query_speedup"] = (
        row["flat_single_query_seconds"] / row["ivf_single_query_seconds"]
    )
    row["ivf_build_slowdown"] = row["ivf_build_seconds"] / row["flat_build_seconds"]
    log.info(
        "%7d items: exact %.3f ms/query, IVF %.3f ms/query (x%.1f faster, recall@%d %.3f, "
        "nprobe %d/%d), IVF build %.1fs (x%.0f the exact build)",
        size, 1e3 * row["flat_single_query_seconds"], 1e3 * row["ivf_single_query_seconds"],
        row["ivf_single_query_speedup"], k, row[f"ivf_recall_at_{k}"], row["ivf_nprobe"],
        row["ivf_nlist"], row["ivf_build_seconds"], row["ivf_build_slowdown"],
    )  # fmt: skip
    return row


def plot(rows: list[dict[str, Any]], k: int, path: Path) -> None:
    sizes = [r["size"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for kind, label in (("flat", "exact (IndexFlatIP)"), ("ivf", "IVF (nprobe tuned)")):
        left.plot(sizes, [1e3 * r[f"{kind}_single_query_seconds"] for r in rows], "o-",
                  label=label)  # fmt: skip
        right.plot(sizes, [r[f"{kind}_build_seconds"] for r in rows], "o-", label=label)
    left.set(xscale="log", yscale="log", xlabel="items", ylabel="ms per single query",
             title="search latency")  # fmt: skip
    right.set(xscale="log", yscale="log", xlabel="items", ylabel="seconds",
              title="build time (per snapshot)")  # fmt: skip
    for r in rows:
        left.annotate(f"recall {r[f'ivf_recall_at_{k}']:.2f}",
                      (r["size"], 1e3 * r["ivf_single_query_seconds"]), fontsize=8)  # fmt: skip
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--sizes", default="20000,50000,100000")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    faiss.omp_set_num_threads(args.threads)
    rows = [
        measure(int(size), args.dim, args.queries, args.k, args.seed)
        for size in args.sizes.split(",")
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k != "out"}
    (args.out / "index_benchmark.json").write_text(
        json.dumps({"config": config, "rows": rows}, indent=1)
    )
    plot(rows, args.k, args.out / "index_benchmark.png")
    print(f"wrote {args.out / 'index_benchmark.json'} and {args.out / 'index_benchmark.png'}")


if __name__ == "__main__":
    main()
