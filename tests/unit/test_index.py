"""The FAISS item index against exact numpy search, on real FAISS."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from learner.index import (
    IndexConfig,
    build_index,
    choose_kind,
    default_nlist,
    exact_top_k,
    read_index,
    recall_against_exact,
    write_index,
)

faiss.omp_set_num_threads(1)  # the test machine's cores are shared


def _clustered(num: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Item embeddings around ``clusters`` centres, like a trained item table."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    which = rng.integers(0, clusters, size=num)
    return (centres[which] + 0.3 * rng.normal(size=(num, dim))).astype(np.float32)


def test_flat_search_equals_numpy_argsort_of_inner_products() -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(500, 16)).astype(np.float32)
    ids = np.arange(2, 502, dtype=np.int64)  # vocabulary indices start at FIRST_INDEX = 2
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    index = build_index(emb, ids)
    assert index.kind == "flat" and index.num_items == 500 and index.recall is None
    scores, found = index.search(queries, 10)
    expected_scores = queries @ emb.T
    order = np.argsort(-expected_scores, axis=1)[:, :10]
    np.testing.assert_array_equal(found, ids[order])
    np.testing.assert_allclose(
        scores, np.take_along_axis(expected_scores, order, axis=1), rtol=1e-5, atol=1e-5
    )


def test_k_beyond_corpus_pads_with_minus_one_and_minus_inf() -> None:
    emb = np.eye(3, dtype=np.float32)
    index = build_index(emb, np.array([5, 6, 7]))
    scores, found = index.search(np.array([[0.0, 2.0, 1.0]], np.float32), 5)
    assert found.tolist() == [[6, 7, 5, -1, -1]]
    assert scores[0, :3].tolist() == [2.0, 1.0, 0.0]
    assert np.isneginf(scores[0, 3:]).all()


def test_kind_follows_corpus_size() -> None:
    config = IndexConfig(exact_max_items=1000)
    assert choose_kind(1000, config) == "flat"
    assert choose_kind(1001, config) == "ivf"
    assert choose_kind(10, IndexConfig(kind="ivf")) == "ivf"
    assert default_nlist(20_000) == 512  # min(4·sqrt(20000)=565, 20000//39=512)
    assert default_nlist(10) == 1


def test_ivf_recall_at_10_on_clustered_20k_items() -> None:
    emb = _clustered(20_000, 32, clusters=200, seed=2)
    rng = np.random.default_rng(3)
    queries = _clustered(300, 32, clusters=200, seed=4) + 0.1 * rng.normal(size=(300, 32))
    index = build_index(emb, config=IndexConfig(exact_max_items=10_000), queries=queries[:100])
    assert index.kind == "ivf"
    assert index.nprobe is not None and 1 <= index.nprobe <= index.info["nlist"]
    assert index.recall is not None and index.recall >= 0.95
    # measured on queries the tuning never saw
    recall = recall_against_exact(index, emb, queries[100:], k=10)
    assert recall >= 0.95
    # and a single probe really is approximate, so the check above can fail
    index.index.nprobe = 1
    assert recall_against_exact(index, emb, queries[100:], k=10) < recall


def test_write_and_read_round_trip(tmp_path: Path) -> None:
    emb = _clustered(2_000, 8, clusters=20, seed=5)
    ids = np.arange(2, 2002, dtype=np.int64)
    queries = _clustered(50, 8, clusters=20, seed=6)
    for kind in ("flat", "ivf"):
        index = build_index(emb, ids, IndexConfig(kind=kind))
        path = tmp_path / f"{kind}.faiss"
        write_index(index, path)
        again = read_index(path, index.kind, index.nprobe, index.recall)
        assert again.num_items == 2000 and again.dim == 8 and again.nprobe == index.nprobe
        first, second = index.search(queries, 7), again.search(queries, 7)
        np.testing.assert_array_equal(first[1], second[1])
        np.testing.assert_array_equal(first[0], second[0])


def test_exact_top_k_breaks_ties_by_position() -> None:
    emb = np.ones((4, 2), np.float32)
    assert exact_top_k(emb, np.array([9, 8, 7, 6]), np.ones((1, 2), np.float32), 2).tolist() == [
        [9, 8]
    ]


@pytest.mark.parametrize(
    ("emb", "ids", "message"),
    [
        (np.zeros((0, 4), np.float32), None, "empty corpus"),
        (np.zeros(4, np.float32), None, "matrix"),
        (np.full((2, 2), np.nan, np.float32), None, "NaN"),
        (np.zeros((2, 2), np.float32), np.array([1, 1]), "distinct"),
        (np.zeros((2, 2), np.float32), np.array([1]), "ids must be"),
    ],
)
def test_bad_input_says_why(emb: np.ndarray, ids: np.ndarray | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_index(emb, ids)


def test_bad_queries_and_config_say_why() -> None:
    index = build_index(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        index.search(np.zeros((1, 4), np.float32), 1)
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.zeros((1, 3), np.float32), 0)
    with pytest.raises(ValueError, match="target_recall"):
        IndexConfig(target_recall=0.0)


@pytest.mark.gpu
@pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="needs faiss' GPU build and a CUDA device")
def test_gpu_index_matches_cpu() -> None:
    emb = _clustered(5_000, 32, clusters=50, seed=7)
    queries = _clustered(64, 32, clusters=50, seed=8)
    gpu = build_index(emb)
    cpu = build_index(emb, config=IndexConfig(use_gpu=False))
    assert gpu.on_gpu and not cpu.on_gpu
    np.testing.assert_array_equal(gpu.search(queries, 10)[1], cpu.search(queries, 10)[1])
    ivf = build_index(emb, config=IndexConfig(kind="ivf"))
    assert ivf.on_gpu and recall_against_exact(ivf, emb, queries, 10) >= 0.95
