"""Snapshot store: layout, manifest, exact recommendations after reload, failure modes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import learner.snapshot_publish as publish_module
from learner.features import encode_histories
from learner.index import IndexConfig
from learner.model import SequenceRecommender
from learner.snapshot import (
    ItemMeta,
    SnapshotError,
    SnapshotInfo,
    latest_version,
    list_versions,
    load_snapshot,
)
from learner.snapshot_publish import publish_snapshot
from learner.synthetic import synthetic_examples
from learner.vocab import FIRST_INDEX, Vocabularies
from recoil.core.records import HistoryItem, TrainingExample
from tests.support.snapshots import untrained_parts

torch.set_num_threads(1)

ARM = "feature_and_labels"


def _trained_parts(
    seed: int = 0,
) -> tuple[SequenceRecommender, Vocabularies, dict[str, ItemMeta], list[TrainingExample]]:
    """A small model (randomly initialised, seeded) with the vocabularies of real examples."""
    examples = synthetic_examples(num_users=8, events_per_user=30, num_items=60, seed=seed)
    model, vocabs, meta = untrained_parts(examples, ARM, dim=16, max_len=10, seed=seed)
    return model, vocabs, meta, examples


def _publish(store: Path, step: int = 7, **kwargs: object) -> SnapshotInfo:
    model, vocabs, meta, _ = _trained_parts()
    return publish_snapshot(store, model, vocabs, ARM, meta, step, {0: 11, 1: 4}, **kwargs)  # type: ignore[arg-type]


def test_publish_writes_the_documented_layout_and_manifest(tmp_path: Path) -> None:
    announced: list[SnapshotInfo] = []
    model, vocabs, meta, _ = _trained_parts()
    info = publish_snapshot(
        tmp_path, model, vocabs, ARM, meta, step=7, offsets={1: 4, 0: 11},
        examples=240, announce=announced.append, clock=lambda: 1_700_000_000.5,
    )  # fmt: skip
    assert info.version == 1 and announced == [info]
    assert json.loads(info.announcement()) == {
        "version": 1, "path": str(tmp_path / "v00000001"), "created_at": 1_700_000_000.5, "step": 7,
    }  # fmt: skip
    directory = tmp_path / "v00000001"
    assert sorted(p.name for p in directory.iterdir()) == [
        "index.faiss", "item_embeddings.npy", "items.json", "manifest.json",
        "model.safetensors", "vocab_creators.json", "vocab_items.json",
    ]  # fmt: skip
    assert (tmp_path / "LATEST").read_text() == "1\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["step"] == 7
    assert manifest["created_at"] == 1_700_000_000.5
    assert manifest["offsets"] == {"0": 11, "1": 4}
    assert manifest["arm"]["name"] == ARM and manifest["arm"]["dislike_labels"] is True
    assert manifest["model_config"]["num_items"] == len(vocabs.items)
    assert manifest["counts"] == {
        "items": vocabs.items.num_ids, "creators": vocabs.creators.num_ids, "examples": 240,
    }  # fmt: skip
    assert manifest["index"]["kind"] == "flat"
    assert set(manifest["files"]) == {p.name for p in directory.iterdir()} - {"manifest.json"}
    embeddings = np.load(directory / "item_embeddings.npy")
    # D = 16 and the items' ranking offsets (the arm takes not-to-recommend labels)
    assert embeddings.shape == (len(vocabs.items), 17)
    items = json.loads((directory / "items.json").read_text())
    first = items["rows"][0]
    assert first[0] == FIRST_INDEX and first[1] == vocabs.items.id_of(FIRST_INDEX)
    assert (first[2], first[3]) == (meta[first[1]].creator_id, meta[first[1]].cluster_id)


def test_versions_increase_and_latest_follows(tmp_path: Path) -> None:
    assert latest_version(tmp_path) is None
    assert latest_version(tmp_path / "absent") is None
    assert [_publish(tmp_path).version for _ in range(3)] == [1, 2, 3]
    assert latest_version(tmp_path) == 3 and list_versions(tmp_path) == [1, 2, 3]
    # a publisher that died between its rename and LATEST: the scan still finds it
    (tmp_path / "LATEST").write_text("2\n")
    assert latest_version(tmp_path) == 3
    assert _publish(tmp_path).version == 4
    assert (tmp_path / "LATEST").read_text() == "4\n"


def test_old_versions_are_pruned(tmp_path: Path) -> None:
    for _ in range(4):
        _publish(tmp_path, keep=2)
    assert list_versions(tmp_path) == [3, 4]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_recommend_is_exact_top_k_of_state_dot_embeddings(tmp_path: Path) -> None:
    model, vocabs, meta, examples = _trained_parts()
    publish_snapshot(tmp_path, model, vocabs, ARM, meta, 1, {})
    snap = load_snapshot(tmp_path)
    histories = [list(e.history) for e in examples[5:40:7]] + [[]]
    batch = encode_histories(histories, vocabs, 10, ARM)
    model.eval()
    with torch.no_grad():
        offsets = model.item_offsets()
        assert offsets is not None and bool((offsets[FIRST_INDEX:] != 0).any())
        v = model.item_embeddings()[FIRST_INDEX:]
        scores = (model.user_state(batch) @ v.T + offsets[FIRST_INDEX:]).numpy()
    got = snap.recommend(histories, k=5, exclude_seen=False)
    for row, ranked in zip(scores, got, strict=True):
        order = np.argsort(-row)[:5]
        assert [item for item, _ in ranked] == [vocabs.items.id_of(FIRST_INDEX + j) for j in order]
        np.testing.assert_allclose([s for _, s in ranked], row[order], rtol=1e-5, atol=1e-6)
    # exclude_seen drops history items and still returns k
    for history, ranked in zip(histories, snap.recommend(histories, k=5), strict=True):
        assert len(ranked) == 5
        assert not {item for item, _ in ranked} & {h.item_id for h in history}
    assert snap.recommend([], k=3) == []


def test_recommend_applies_the_arms_input_transform(tmp_path: Path) -> None:
    model, vocabs, meta, _ = _trained_parts()
    ids = vocabs.items.ids()
    disliked = [HistoryItem(ids[0], "c0", "k0", True, 3, 1, 1.0),
                HistoryItem(ids[1], "c0", "k1", False, 3, 1, 2.0)]  # fmt: skip
    liked = [HistoryItem(ids[0], "c0", "k0", False, 3, 1, 1.0), disliked[1]]
    states = {}
    for arm in ("feature_and_labels", "no_signal", "exclude_heuristic"):
        store = tmp_path / arm
        publish_snapshot(store, model, vocabs, arm, meta, 1, {})
        snap = load_snapshot(store)
        assert snap.arm.name == arm
        states[arm] = snap.user_states([disliked, liked])
    # the dislike flag reaches the model only where the arm shows it
    assert not np.allclose(states["feature_and_labels"][0], states["feature_and_labels"][1])
    np.testing.assert_array_equal(states["no_signal"][0], states["no_signal"][1])
    # exclude_heuristic reads the disliked history as if only the second item were there
    alone = load_snapshot(tmp_path / "exclude_heuristic").user_states([[disliked[1]]])
    np.testing.assert_allclose(states["exclude_heuristic"][0], alone[0], atol=1e-6)


def test_item_meta_and_truncated_vocabulary(tmp_path: Path) -> None:
    model, vocabs, meta, _ = _trained_parts()
    vocabs.items.add(["arrived-after-the-last-step"])  # no table row yet
    vocabs.creators.add(["new-creator"])
    info = publish_snapshot(tmp_path, model, vocabs, ARM, meta, 1, {})
    snap = load_snapshot(tmp_path, info.version)
    assert len(snap.vocabs.items) == model.num_items
    assert "arrived-after-the-last-step" not in snap.vocabs.items
    assert "new-creator" not in snap.vocabs.creators
    some = vocabs.items.ids()[3]
    assert snap.item_meta(some) == meta[some]
    assert snap.item_meta("never-seen") is None
    assert snap.unknown_items([some, "never-seen", "arrived-after-the-last-step"]) == [
        "never-seen", "arrived-after-the-last-step",
    ]  # fmt: skip
    assert snap.version == 1 and snap.step == 1 and snap.offsets == {}


def test_corrupt_file_fails_checksum(tmp_path: Path) -> None:
    _publish(tmp_path)
    path = tmp_path / "v00000001" / "item_embeddings.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="checksum"):
        load_snapshot(tmp_path)
    load_snapshot(tmp_path, verify=False)  # still loadable when asked not to check


def test_missing_snapshot_says_why(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="empty or absent"):
        load_snapshot(tmp_path)
    _publish(tmp_path)
    with pytest.raises(SnapshotError, match="not version 2"):
        load_snapshot(tmp_path / "v00000001", version=2)


def test_failed_verification_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(tmp_path)

    def broken(*args: object) -> None:
        raise SnapshotError("reloaded model gives different user states than the trained one")

    monkeypatch.setattr(publish_module, "_verify", broken)
    with pytest.raises(SnapshotError, match="different user states"):
        _publish(tmp_path)
    assert list_versions(tmp_path) == [1]
    assert (tmp_path / "LATEST").read_text() == "1\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_ivf_snapshot_round_trips(tmp_path: Path) -> None:
    info = _publish(tmp_path, index_config=IndexConfig(kind="ivf", nlist=4))
    snap = load_snapshot(tmp_path)
    assert info.index_kind == "ivf" and snap.index.kind == "ivf"
    assert snap.manifest["index"]["nprobe"] == snap.index.nprobe
    assert len(snap.recommend([[]], k=10)[0]) == 10


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"hidden_dim": 48, "num_layers": 3},
        {"encoder": "sasrec", "num_heads": 2, "num_layers": 2, "hidden_dim": 40},
        {"tie_embeddings": True, "num_items": 7, "num_creators": 3},
    ],
)
def test_least_values_is_a_lower_bound_of_the_models_weights(changes: dict[str, Any]) -> None:
    """The bound a snapshot's weights are held to before its model is built must never
    refuse the model's own weights."""
    from learner.model import ModelConfig
    from learner.snapshot_checks import least_values

    config = ModelConfig(**{"num_items": 50, "num_creators": 9, **changes})
    held = sum(t.numel() for t in SequenceRecommender(config).state_dict().values())
    assert 0 < least_values(config) <= held
