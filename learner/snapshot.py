"""Versioned model snapshots: what serving loads, published atomically.

Store layout (one directory per version; nothing in it changes once renamed)::

    <store>/
      LATEST                    the newest version as text ("12\\n"), replaced atomically
      v00000012/
        manifest.json           what and how: see below
        model.safetensors       SequenceRecommender state_dict (safetensors: no pickle)
        vocab_items.json        item ids <-> indices (learner.vocab.Vocabulary JSON)
        vocab_creators.json     creator ids <-> indices
        items.json              per item index: item id, creator id, cluster id
        item_embeddings.npy     v, (rows, D) float32; row r is item index r (D + 1
                                columns with the items' ranking offsets, see
                                ``learner.item_feedback``)
                                (rows 0 and 1 are the reserved pad/unknown rows)
        index.faiss             FAISS index over rows FIRST_INDEX.. (ids = item indices)
      .tmp-...                  a snapshot being written (readers ignore dot-names)

``manifest.json`` holds ``format`` ("recoil.snapshot/1"), ``version``,
``created_at`` (Unix seconds), ``step`` (optimizer steps the model has taken),
``topic`` and ``offsets`` (partition -> next offset: every example before it
is in the model), ``arm`` (the ``ArmConfig`` fields), ``model_config`` (the
``ModelConfig`` fields, table sizes included), ``counts`` (items, creators,
examples), ``index`` (kind, nprobe, recall@k against exact, ...), ``files``
(sha256 of every other file) and ``extra`` (free-form, from the publisher).

Publishing (``learner.snapshot_publish.publish_snapshot``): write every file into
``<store>/.tmp-*``, fsync, reload it with ``load_snapshot`` (checksums included), check that the
reloaded model and index answer a test query exactly as the in-memory ones do,
then ``rename`` the directory to ``v{version:08d}`` (atomic on one filesystem;
it fails if the name exists, so two publishers never share a version) and
replace ``LATEST`` (write a temporary file, ``os.replace``). A reader therefore
sees a version directory complete or not at all. Versions strictly increase:
the next one is one above the largest in the store, also across restarts.

Readers: ``latest_version(store)`` then ``load_snapshot(store, version)``
(or ``load_snapshot(store)`` for the newest). A ``Snapshot`` offers
``recommend(histories, k, exclude_seen=True) -> [[(item_id, score), ...], ...]``
(the arm's input transform applied as in training; user state by the encoder;
top-k by FAISS; score = ``s·v``), ``user_states(histories)`` (B, D),
``item_meta(item_id) -> ItemMeta | None``, ``item_ids()``, and ``version``,
``step``, ``created_at``, ``offsets`` (what the model has trained on, per
partition), ``manifest``.
Loading uses only json, numpy (``allow_pickle=False``), safetensors and
``faiss.read_index``. A ``Snapshot`` is never mutated: serving swaps its
reference to a newer one (FAISS indexes must not change while searched).
Old versions beyond ``keep`` are removed by renaming them to a dot-name first;
a reader still loading one of those gets a ``SnapshotError`` (its files are gone)
and should load the latest instead. Whatever else is wrong with a version directory
is a ``SnapshotError`` too, in one line naming it (see ``load_snapshot``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from learner.arms import ArmConfig
from learner.features import encode_histories
from learner.index import ItemIndex, read_index
from learner.model import SequenceRecommender, model_config_from_dict
from learner.snapshot_checks import check_agrees, check_weights_fit
from learner.snapshot_store import (
    LATEST,
    latest_version,
    list_versions,
    regular_file,
    sha256,
    version_dir,
)
from learner.vocab import UNKNOWN_INDEX, Vocabularies, Vocabulary
from recoil.core.records import EXCLUDE_SEEN, HistoryItem, TrainingExample

__all__ = [
    "LATEST", "ItemMeta", "Snapshot", "SnapshotError", "SnapshotInfo", "latest_version",
    "list_versions", "load_snapshot", "update_items_meta", "version_dir",
]  # fmt: skip

log = logging.getLogger(__name__)

FORMAT = "recoil.snapshot/1"
ITEMS_FORMAT = "recoil.items/1"
MANIFEST = "manifest.json"
MODEL_FILE = "model.safetensors"
VOCAB_ITEMS = "vocab_items.json"
VOCAB_CREATORS = "vocab_creators.json"
ITEMS_FILE = "items.json"
EMBEDDINGS_FILE = "item_embeddings.npy"
INDEX_FILE = "index.faiss"
PUBLISHED_FILES = frozenset(
    {MODEL_FILE, VOCAB_ITEMS, VOCAB_CREATORS, ITEMS_FILE, EMBEDDINGS_FILE, INDEX_FILE}
)  # what the manifest checksums: every file but itself
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few kB; a larger file is not one


class SnapshotError(RuntimeError):
    """A snapshot is missing, corrupt, or failed verification; the message says which."""


@dataclass(frozen=True, slots=True)
class ItemMeta:
    """What the stream has told us about an item (from examples' label and history fields)."""

    creator_id: str | None
    cluster_id: str | None


def update_items_meta(meta: dict[str, ItemMeta], examples: Iterable[TrainingExample]) -> None:
    """Record creator and cluster of every item in ``examples`` (the newest wins)."""
    for example in examples:
        for h in example.history:
            meta[h.item_id] = ItemMeta(h.creator_id, h.cluster_id)
        meta[example.label_item_id] = ItemMeta(example.label_creator_id, example.label_cluster_id)


@dataclass(frozen=True)
class SnapshotInfo:
    """A published snapshot, as announced on ``model-updates``."""

    version: int
    path: str
    created_at: float
    step: int
    num_items: int
    index_kind: str
    publish_seconds: float

    def announcement(self) -> bytes:
        """The ``model-updates`` message: JSON with version, path, created_at, step."""
        body = {
            "version": self.version,
            "path": self.path,
            "created_at": self.created_at,
            "step": self.step,
        }
        return json.dumps(body, separators=(",", ":")).encode()


class Snapshot:
    """A loaded, immutable snapshot: recommends top-k items for histories."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        model: SequenceRecommender,
        vocabs: Vocabularies,
        arm: ArmConfig,
        items_meta: dict[str, ItemMeta],
        embeddings: np.ndarray,
        index: ItemIndex,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.model = model.eval()
        self.vocabs = vocabs
        self.arm = arm
        self.embeddings = embeddings  # (rows, D) float32
        self.index = index
        self._items_meta = items_meta

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def step(self) -> int:
        return int(self.manifest["step"])

    @property
    def created_at(self) -> float:
        return float(self.manifest["created_at"])

    @property
    def offsets(self) -> dict[int, int]:
        """Partition -> next offset of the training topic: what the model has seen."""
        return {int(p): int(o) for p, o in self.manifest["offsets"].items()}

    @property
    def max_len(self) -> int:
        return int(self.manifest["model_config"]["max_len"])

    def item_ids(self) -> list[str]:
        return self.vocabs.items.ids()

    def item_meta(self, item_id: str) -> ItemMeta | None:
        """Creator and cluster of ``item_id``, or None for an item this snapshot lacks."""
        return self._items_meta.get(item_id)

    def unknown_items(self, item_ids: Iterable[str]) -> list[str]:
        """The ids among ``item_ids`` this snapshot has no row for (served as the unknown item)."""
        items = self.vocabs.items
        return [i for i in item_ids if items.index(i) == UNKNOWN_INDEX]

    def user_states(self, histories: Sequence[Sequence[HistoryItem]]) -> np.ndarray:
        """s per history, (B, D) float32, with the arm's input transform applied (and a
        last coordinate 1 when the items carry ranking offsets: the index's queries)."""
        batch = encode_histories(histories, self.vocabs, self.max_len, self.arm)
        # inference_mode, not no_grad: no version counters or view tracking; measured
        # 5-8% off serving's batches of 1-64 (bench serving)
        with torch.inference_mode():
            return self.model.query_vectors(batch).numpy()  # (B, D), D + 1 with item offsets

    def recommend(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = EXCLUDE_SEEN
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` (item id, score ``s·v``) per history, best first.

        With ``exclude_seen`` the items of each history are left out (fewer than
        ``k`` come back only when the corpus runs out).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not histories:
            return []
        states = self.user_states(histories)
        seen = [{h.item_id for h in history} for history in histories] if exclude_seen else []
        extra = max((len(s) for s in seen), default=0)
        scores, found = self.index.search(states, min(k + extra, self.index.num_items))
        ids = self.vocabs.items
        result: list[list[tuple[str, float]]] = []
        for row, (row_scores, row_found) in enumerate(zip(scores, found, strict=True)):
            ranked: list[tuple[str, float]] = []
            for score, index in zip(row_scores.tolist(), row_found.tolist(), strict=True):
                if index < 0:
                    break
                item_id = ids.id_of(index)
                if exclude_seen and item_id in seen[row]:
                    continue
                ranked.append((item_id, score))
                if len(ranked) == k:
                    break
            result.append(ranked)
        return result

    def __repr__(self) -> str:
        return f"Snapshot(version={self.version}, items={len(self.item_ids())}, path={self.path})"


def load_snapshot(
    path_or_store: str | os.PathLike[str], version: int | None = None, verify: bool = True
) -> Snapshot:
    """Load a snapshot directory, or version ``version`` (default: latest) of a store.

    With ``verify`` every file's sha256 is checked against the manifest, and the parts
    against each other (``learner.snapshot_checks.check_agrees``). Whatever is wrong
    with the directory is a ``SnapshotError`` naming it and the fault: a file missing,
    unreadable, not a regular file (a symlink may point anywhere, a FIFO blocks its
    reader forever), truncated or foreign; a manifest that is not one; weights that do
    not fit its ``model_config`` or are not finite. Nothing in it is unpickled.
    """
    path = Path(path_or_store)
    if not (path / MANIFEST).is_file():
        if version is None:
            version = latest_version(path)
            if version is None:
                raise SnapshotError(f"no snapshot in {path}: the store is empty or absent")
        path = version_dir(path, version)
    try:
        return _load(path, version, verify)
    except SnapshotError:
        raise
    except Exception as exc:  # whatever a damaged or foreign file makes its reader raise
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise SnapshotError(f"{path}: {reason[:500]}") from exc


def _load(path: Path, version: int | None, verify: bool) -> Snapshot:
    manifest = _read_manifest(path, version)
    for name in manifest["files"]:
        regular_file(path / name)
    if verify:
        for name, digest in manifest["files"].items():
            if sha256(path / name) != digest:
                raise SnapshotError(f"{path / name}: checksum does not match the manifest")
    try:
        config = model_config_from_dict(manifest["model_config"])
    except TypeError as exc:
        raise SnapshotError(
            f"{path / MANIFEST}: model_config does not fit ModelConfig: {exc}"
        ) from exc
    weights = load_file(path / MODEL_FILE)
    check_weights_fit(weights, config)
    model = SequenceRecommender(config)
    model.load_state_dict(weights)
    vocabs = Vocabularies(
        Vocabulary.load(path / VOCAB_ITEMS), Vocabulary.load(path / VOCAB_CREATORS)
    )
    embeddings = np.load(path / EMBEDDINGS_FILE, allow_pickle=False)
    described = manifest["index"]
    index = read_index(
        path / INDEX_FILE, described["kind"], described.get("nprobe"), described.get("recall_at_k")
    )
    items = json.loads((path / ITEMS_FILE).read_text())
    if items.get("format") != ITEMS_FORMAT:
        raise SnapshotError(f"{path / ITEMS_FILE}: not {ITEMS_FORMAT}")
    meta: dict[str, ItemMeta] = {}
    for _, item_id, creator_id, cluster_id in items["rows"]:
        # served as they are in every answer: ids or null, nothing else
        if not isinstance(item_id, str) or not all(
            isinstance(v, str | None) for v in (creator_id, cluster_id)
        ):
            raise SnapshotError(f"{path / ITEMS_FILE}: item {item_id!r} has a row of non-ids")
        meta[item_id] = ItemMeta(creator_id, cluster_id)
    arm = ArmConfig(**manifest["arm"])
    snapshot = Snapshot(path, manifest, model, vocabs, arm, meta, embeddings, index)
    if verify:
        check_agrees(model, vocabs, embeddings, index, snapshot.user_states([[]]))
    return snapshot


def _read_manifest(path: Path, version: int | None) -> dict[str, Any]:
    """The manifest of the snapshot in ``path``, which must be version ``version`` (if
    given) and list exactly the files a snapshot has."""
    file = path / MANIFEST
    try:
        regular_file(file, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise SnapshotError(f"{path} has no {MANIFEST}: not a published snapshot") from None
    try:
        manifest = json.loads(file.read_bytes())
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deeply
        raise SnapshotError(f"{file}: not JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise SnapshotError(f"{file}: format is {found!r}, not {FORMAT}")
    number = manifest.get("version")
    if type(number) is not int or number < 1:
        raise SnapshotError(f"{file}: version {number!r} is not a positive integer")
    if version is not None and number != version:
        raise SnapshotError(f"{path} is not version {version}: its manifest says {number}")
    # what serving's /snapshot answers: numbers, and JSON ones (NaN is not)
    step, created_at, offsets = (manifest.get(k) for k in ("step", "created_at", "offsets"))
    if not (
        type(step) is int and step >= 0
        and isinstance(created_at, int | float) and math.isfinite(created_at)
        and isinstance(offsets, dict)
        and all(p.isascii() and p.isdigit() and type(o) is int for p, o in offsets.items())
    ):  # fmt: skip
        raise SnapshotError(f"{file}: step, created_at or offsets is not a number")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != PUBLISHED_FILES:
        listed = repr(sorted(files) if isinstance(files, dict) else files)[:300]
        raise SnapshotError(
            f"{file}: files lists {listed}, not a checksum of each of {sorted(PUBLISHED_FILES)}"
        )
    return manifest
