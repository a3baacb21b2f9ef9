"""Publishing a snapshot: write every file into a hidden directory, reload and verify
it, then rename it into the store as the next version (the layout, the manifest and the
guarantees are in ``learner.snapshot``, which reads what this writes)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from learner.arms import ArmConfig, resolve_arm
from learner.features import encode_histories
from learner.index import IndexConfig, ItemIndex, build_index, write_index
from learner.model import SequenceRecommender
from learner.snapshot import (
    EMBEDDINGS_FILE,
    FORMAT,
    INDEX_FILE,
    ITEMS_FILE,
    ITEMS_FORMAT,
    MANIFEST,
    MODEL_FILE,
    VOCAB_CREATORS,
    VOCAB_ITEMS,
    ItemMeta,
    Snapshot,
    SnapshotError,
    SnapshotInfo,
    load_snapshot,
)
from learner.snapshot_store import (
    fsync_dir,
    latest_version,
    prune,
    remove_stale,
    sha256,
    version_dir,
    write_latest,
)
from learner.vocab import FIRST_INDEX, Vocabularies, Vocabulary
from recoil.core.records import HistoryItem
from recoil.core.topics import TRAINING_EXAMPLES

log = logging.getLogger(__name__)


def _truncated(vocab: Vocabulary, rows: int) -> Vocabulary:
    """The first ``rows`` rows of ``vocab``: ids the model has table rows for."""
    if len(vocab) < rows:
        raise ValueError(f"model has {rows} table rows but the vocabulary only {len(vocab)}")
    return Vocabulary(vocab.ids()[: rows - FIRST_INDEX])


def _probe_histories(vocabs: Vocabularies, meta: Mapping[str, ItemMeta]) -> list[list[HistoryItem]]:
    """Test queries for verification: the empty history and one of a few known items."""
    items = vocabs.items.ids()[:5]
    history = [
        HistoryItem(
            i, (meta.get(i) or ItemMeta(None, None)).creator_id or "", None, n == 0, 3, 1, 1.0 + n
        )
        for n, i in enumerate(items)
    ]
    return [[], history]


def _write_files(
    directory: Path,
    model: SequenceRecommender,
    vocabs: Vocabularies,
    items_meta: Mapping[str, ItemMeta],
    index_config: IndexConfig,
    queries: np.ndarray | None,
) -> tuple[ItemIndex, np.ndarray]:
    """Weights, vocabularies, item table, embeddings and index into ``directory``."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, directory / MODEL_FILE)
    vocabs.items.save(directory / VOCAB_ITEMS)
    vocabs.creators.save(directory / VOCAB_CREATORS)
    rows = []
    for row, item_id in enumerate(vocabs.items.ids(), start=FIRST_INDEX):
        meta = items_meta.get(item_id) or ItemMeta(None, None)
        rows.append([row, item_id, meta.creator_id, meta.cluster_id])
    body = {
        "format": ITEMS_FORMAT,
        "columns": ["index", "item_id", "creator_id", "cluster_id"],
        "rows": rows,
    }
    (directory / ITEMS_FILE).write_text(json.dumps(body, separators=(",", ":")))
    # (rows, D), or D + 1 with the items' ranking offsets
    embeddings = model.index_vectors().detach().cpu().numpy().astype(np.float32)
    np.save(directory / EMBEDDINGS_FILE, embeddings, allow_pickle=False)
    real = embeddings[FIRST_INDEX:]
    ids = np.arange(FIRST_INDEX, len(embeddings), dtype=np.int64)
    index = build_index(real, ids, index_config, queries)
    write_index(index, directory / INDEX_FILE)
    return index, embeddings


def _verify(
    loaded: Snapshot, model: SequenceRecommender, index: ItemIndex, probes: list[list[HistoryItem]]
) -> None:
    """The reloaded snapshot must answer the test queries as the in-memory model does."""
    batch = encode_histories(probes, loaded.vocabs, loaded.max_len, loaded.arm)
    with torch.no_grad():
        expected = model.query_vectors(batch.to(next(model.parameters()).device)).cpu().numpy()
    states = loaded.user_states(probes)
    if not np.allclose(states, expected, rtol=1e-5, atol=1e-6):
        raise SnapshotError("reloaded model gives different user states than the trained one")
    k = min(10, index.num_items)
    if not np.array_equal(loaded.index.search(states, k)[1], index.search(expected, k)[1]):
        raise SnapshotError("reloaded index returns different items than the built one")


def publish_snapshot(
    store: str | os.PathLike[str],
    model: SequenceRecommender,
    vocabs: Vocabularies,
    arm: str | ArmConfig,
    items_meta: Mapping[str, ItemMeta],
    step: int,
    offsets: Mapping[int, int],
    *,
    topic: str = TRAINING_EXAMPLES,
    examples: int = 0,
    index_config: IndexConfig | None = None,
    queries: np.ndarray | None = None,
    probe_histories: list[list[HistoryItem]] | None = None,
    announce: Callable[[SnapshotInfo], None] | None = None,
    keep: int = 10,
    extra: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> SnapshotInfo:
    """Write, verify and atomically publish the next version of ``model``; see module doc.

    ``vocabs`` may hold ids the model has no rows for yet (they arrived after
    its last step): only the first ``model.num_items`` / ``num_creators`` rows
    are published. ``queries`` (recent user states) tune an IVF index;
    ``announce`` is called with the result (see ``kafka_announcer``); the
    newest ``keep`` versions are kept, older ones removed.
    """
    started = time.perf_counter()
    arm = resolve_arm(arm)
    root = Path(store)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root)
    vocabs = Vocabularies(
        _truncated(vocabs.items, model.num_items), _truncated(vocabs.creators, model.num_creators)
    )
    if vocabs.items.num_ids == 0:
        raise SnapshotError("cannot publish a snapshot without items")
    was_training = model.training
    model.eval()
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        index, _ = _write_files(
            tmp, model, vocabs, items_meta, index_config or IndexConfig(), queries
        )
        created_at = clock()
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": 0,  # set below, once the version is known
            "created_at": created_at,
            "step": int(step),
            "topic": topic,
            "offsets": {str(p): int(o) for p, o in sorted(offsets.items())},
            "arm": dataclasses.asdict(arm),
            "model_config": dataclasses.asdict(model.current_config()),
            "counts": {
                "items": vocabs.items.num_ids,
                "creators": vocabs.creators.num_ids,
                "examples": int(examples),
            },
            "index": {k: v for k, v in index.describe().items() if k != "on_gpu"},
            "files": {},
            "extra": dict(extra or {}),
        }
        manifest["files"] = {p.name: sha256(p) for p in sorted(tmp.iterdir())}
        for attempt in range(100):
            version = (latest_version(root) or 0) + 1
            manifest["version"] = version
            _write_manifest(tmp, manifest)
            probes = probe_histories or _probe_histories(vocabs, items_meta)
            _verify(load_snapshot(tmp), model, index, probes)
            final = version_dir(root, version)
            try:
                os.rename(tmp, final)  # atomic; fails if another publisher took the version
            except OSError:
                if final.exists() and attempt < 99:
                    continue
                raise
            break
        fsync_dir(root)
        write_latest(root, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.train(was_training)
    prune(root, keep)
    info = SnapshotInfo(
        version,
        str(final),
        created_at,
        int(step),
        vocabs.items.num_ids,
        index.kind,
        time.perf_counter() - started,
    )
    log.info(
        "published snapshot v%d (step %d, %d items, %s index) in %.2fs",
        version,
        step,
        info.num_items,
        index.kind,
        info.publish_seconds,
    )
    if announce is not None:
        announce(info)
    return info


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    for file in directory.iterdir():
        with file.open("rb") as f:
            os.fsync(f.fileno())
    fsync_dir(directory)


def kafka_announcer(producer: Any, topic: str) -> Callable[[SnapshotInfo], None]:
    """An ``announce`` callback sending ``SnapshotInfo.announcement()`` with a kafka-python
    producer, waiting for the broker's acknowledgement. The key is the store's path, so
    one store's announcements share a partition and arrive in version order."""

    def announce(info: SnapshotInfo) -> None:
        key = str(Path(info.path).parent).encode()
        producer.send(topic, key=key, value=info.announcement()).get(30)

    return announce
