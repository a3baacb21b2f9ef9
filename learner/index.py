"""A FAISS index over item embeddings: top-k items by the model's score ``s·v``.

The model scores item ``y`` for user state ``s`` as the inner product ``s·v_y``
(the softmax logit), so the index searches by inner product (maximum inner
product search), never by L2 distance. Ids stored in the index are the items'
vocabulary indices (``learner.vocab``: ``FIRST_INDEX`` and up), so a search
result is directly a row of the embedding table; the reserved padding and
unknown rows are never indexed.

Index type follows corpus size (``IndexConfig.exact_max_items``):

* up to 200,000 items: ``IndexFlatIP`` (wrapped in ``IndexIDMap`` for the ids),
  exact. Measured on this 2-core machine, one thread, D = 64
  (``python bench/index.py``): 0.13 ms per query at 20k items, 0.96 ms at 100k,
  2.9 ms at 200k, and building costs nothing. IVF answers in 0.02-0.09 ms but
  its k-means costs 2 s (20k), 14 s (100k) and 30 s (200k) on *every* snapshot,
  while snapshots come every ~30 s: below 200k exact search is the better deal;
* above: ``IndexIVFFlat`` with inner-product metric, ``nlist = 4·sqrt(N)``
  coarse cells (bounded so each cell gets >= 39 training points, FAISS'
  guideline), and ``nprobe`` tuned at build time: doubled until recall@k
  against exact search on sample queries reaches ``target_recall`` (0.97 on the
  sample, so that unseen queries keep >= 0.95: measured 0.986-0.996 at 20k-100k).
  The recall reached is kept on the index (``ItemIndex.recall``) and in
  snapshot manifests.

GPU: when faiss' GPU build is installed and sees a device
(``faiss.get_num_gpus() > 0``) and ``IndexConfig.use_gpu`` allows, the CPU index
is cloned onto GPU 0 for search; the CPU copy is kept for ``write_index``.

Concurrency: FAISS indexes are not safe to search while they are being added
to or removed from (faiss #1504, #1216). An ``ItemIndex`` is therefore never
mutated after ``build_index`` returns: new embeddings mean a new index, and
readers swap their reference to it (the maintainers' advice, faiss #492).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import faiss
import numpy as np

IndexKind = Literal["flat", "ivf"]


@dataclass(frozen=True)
class IndexConfig:
    """How to index a corpus; every default is what snapshots use."""

    exact_max_items: int = 200_000  # corpora up to this size get exact IndexFlatIP search
    kind: IndexKind | None = None  # force "flat" or "ivf"; None = choose by corpus size
    nlist: int | None = None  # IVF cells; None = 4·sqrt(N), capped so each cell has >= 39 points
    target_recall: float = 0.97  # nprobe rises until recall@tune_k on the tuning sample reaches
    # this; above the 0.95 promised on unseen queries because the sample is small
    tune_k: int = 10  # the k of the recall that tunes nprobe
    tune_queries: int = 256  # how many sample queries tune nprobe
    seed: int = 0  # k-means and query sampling seed: the same input builds the same index
    use_gpu: bool | None = None  # None = use a GPU when faiss sees one; False = always CPU

    def __post_init__(self) -> None:
        if self.exact_max_items < 0:
            raise ValueError(f"exact_max_items must be >= 0, got {self.exact_max_items}")
        if self.kind not in (None, "flat", "ivf"):
            raise ValueError(f"index kind must be 'flat', 'ivf' or None, got {self.kind!r}")
        if self.nlist is not None and self.nlist < 1:
            raise ValueError(f"nlist must be >= 1, got {self.nlist}")
        if not 0.0 < self.target_recall <= 1.0:
            raise ValueError(f"target_recall must be in (0, 1], got {self.target_recall}")
        if self.tune_k < 1 or self.tune_queries < 1:
            raise ValueError("tune_k and tune_queries must be >= 1")


@dataclass(frozen=True, eq=False)
class ItemIndex:
    """A built, immutable index: ``search`` returns (scores, item indices)."""

    index: Any  # the faiss index searched (a GPU clone when on GPU)
    cpu_index: Any  # the same index on the CPU, for write_index
    kind: IndexKind
    dim: int
    num_items: int
    nprobe: int | None = None  # IVF only: cells visited per query
    recall: float | None = None  # IVF only: recall@tune_k against exact at build time
    on_gpu: bool = False
    info: dict[str, Any] = field(default_factory=dict)  # extra facts for manifests
    gpu_resources: Any = field(default=None, repr=False)  # kept alive as long as the GPU index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per query by inner product, best first.

        ``queries`` is (Q, D) float; returns scores (Q, k) float32 and item
        indices (Q, k) int64. Slots beyond the corpus size hold index -1 and
        score -inf.
        """
        q = _as_matrix(queries, self.dim, "queries")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores, ids = self.index.search(q, k)
        scores[ids < 0] = -np.inf
        return scores, ids

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts about the index (for snapshot manifests and logs)."""
        return {
            "kind": self.kind,
            "dim": self.dim,
            "num_items": self.num_items,
            "nprobe": self.nprobe,
            "recall_at_k": self.recall,
            "on_gpu": self.on_gpu,
            **self.info,
        }


def _as_matrix(x: np.ndarray, dim: int | None, name: str) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 2 or (dim is not None and a.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        raise ValueError(f"{name} must be a {want} matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    return a


def choose_kind(num_items: int, config: IndexConfig) -> IndexKind:
    """``flat`` for corpora up to ``exact_max_items``, ``ivf`` above (unless forced)."""
    if config.kind is not None:
        return config.kind
    return "flat" if num_items <= config.exact_max_items else "ivf"


def default_nlist(num_items: int) -> int:
    """4·sqrt(N) cells, at most N/39 so k-means has 39 points per centroid (>= 1)."""
    return max(1, min(int(4 * math.sqrt(num_items)), num_items // 39))


def gpu_available(config: IndexConfig) -> bool:
    """Whether this index would go to a GPU: faiss' GPU build, a device, and allowed."""
    if config.use_gpu is False:
        return False
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def build_index(
    embeddings: np.ndarray,
    ids: np.ndarray | None = None,
    config: IndexConfig | None = None,
    queries: np.ndarray | None = None,
) -> ItemIndex:
    """Index ``embeddings`` (N, D) under ``ids`` (N,) int64 (default 0..N-1).

    ``queries`` (Q, D), e.g. recent user states, tune IVF's ``nprobe``; without
    them a seeded sample of the embeddings stands in.
    """
    config = config or IndexConfig()
    emb = _as_matrix(embeddings, None, "embeddings")
    num, dim = emb.shape
    if num == 0:
        raise ValueError("cannot index an empty corpus")
    item_ids = np.arange(num, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    if item_ids.shape != (num,):
        raise ValueError(f"ids must be ({num},), got shape {item_ids.shape}")
    if len(np.unique(item_ids)) != num:
        raise ValueError("ids must be distinct")
    kind = choose_kind(num, config)
    nprobe: int | None = None
    recall: float | None = None
    info: dict[str, Any] = {}
    if kind == "flat":
        cpu: Any = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
        cpu.add_with_ids(emb, item_ids)
    else:
        nlist = min(config.nlist or default_nlist(num), num)
        quantizer = faiss.IndexFlatIP(dim)
        cpu = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        cpu.cp.seed = config.seed
        cpu.train(emb)
        cpu.add_with_ids(emb, item_ids)
        info["nlist"] = nlist
    searched, resources = _maybe_to_gpu(cpu, config)
    if kind == "ivf":
        tune = _tuning_queries(emb, queries, config)
        nprobe, recall = _tune_nprobe(searched, cpu, emb, item_ids, tune, config)
    on_gpu = resources is not None
    return ItemIndex(searched, cpu, kind, dim, num, nprobe, recall, on_gpu, info, resources)


def _maybe_to_gpu(cpu: Any, config: IndexConfig) -> tuple[Any, Any]:
    """(index to search, GPU resources or None): a GPU clone of ``cpu`` when usable."""
    if not gpu_available(config):
        return cpu, None
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, cpu), resources


def _tuning_queries(emb: np.ndarray, queries: np.ndarray | None, config: IndexConfig) -> np.ndarray:
    if queries is not None:
        return _as_matrix(queries, emb.shape[1], "queries")[: config.tune_queries]
    rng = np.random.default_rng(config.seed)
    pick = rng.choice(len(emb), size=min(config.tune_queries, len(emb)), replace=False)
    return emb[pick]


def _set_nprobe(index: Any, nprobe: int) -> None:
    if hasattr(index, "nprobe"):
        index.nprobe = nprobe
    else:  # GPU indexes take it through the parameter space
        faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", nprobe)


def _tune_nprobe(
    searched: Any,
    cpu: Any,
    emb: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    config: IndexConfig,
) -> tuple[int, float]:
    """The smallest power-of-two nprobe whose recall@k reaches the target (or nlist)."""
    k = min(config.tune_k, len(emb))
    truth = exact_top_k(emb, ids, queries, k)
    nlist = int(cpu.nlist)
    nprobe = 1
    while True:
        _set_nprobe(searched, nprobe)
        _set_nprobe(cpu, nprobe)
        _, found = searched.search(queries, k)
        recall = _recall(found, truth)
        if recall >= config.target_recall or nprobe >= nlist:
            return nprobe, recall
        nprobe = min(2 * nprobe, nlist)


def exact_top_k(
    embeddings: np.ndarray, ids: np.ndarray | None, queries: np.ndarray, k: int
) -> np.ndarray:
    """Exact top-``k`` ids by inner product (numpy; ties broken by lower position)."""
    emb = _as_matrix(embeddings, None, "embeddings")
    q = _as_matrix(queries, emb.shape[1], "queries")
    scores = q @ emb.T  # (Q, N)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    item_ids = np.arange(len(emb), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    return item_ids[order]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def recall_against_exact(
    index: ItemIndex, embeddings: np.ndarray, queries: np.ndarray, k: int
) -> float:
    """Recall@k of ``index`` on ``queries``: the share of the exact top-``k`` it returns.

    ``embeddings`` are the indexed vectors, in id order 0..N-1 (the ids an index
    built without ``ids`` holds).
    """
    truth = exact_top_k(embeddings, None, queries, k)
    _, found = index.search(queries, k)
    return _recall(found, truth)


def write_index(index: ItemIndex, path: str | os.PathLike[str]) -> None:
    """Write the CPU form of the index (GPU indexes are not serialisable)."""
    faiss.write_index(index.cpu_index, os.fspath(path))


def read_index(
    path: str | os.PathLike[str],
    kind: IndexKind,
    nprobe: int | None = None,
    recall: float | None = None,
    config: IndexConfig | None = None,
) -> ItemIndex:
    """Read an index written by ``write_index``; cloned to a GPU when one is usable."""
    cpu = faiss.read_index(os.fspath(path))
    if nprobe is not None:
        _set_nprobe(cpu, nprobe)
    searched, resources = _maybe_to_gpu(cpu, config or IndexConfig())
    if nprobe is not None and resources is not None:
        _set_nprobe(searched, nprobe)
    info = {"nlist": int(faiss.extract_index_ivf(cpu).nlist)} if kind == "ivf" else {}
    return ItemIndex(
        searched,
        cpu,
        kind,
        int(cpu.d),
        int(cpu.ntotal),
        nprobe,
        recall,
        resources is not None,
        info,
        resources,
    )
