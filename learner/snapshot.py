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
        item_embeddings.npy     v, (rows, D) float32; row r is item index r
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

Publishing (``publish_snapshot``): write every file into ``<store>/.tmp-*``,
fsync, reload it with ``load_snapshot`` (checksums included), check that the
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

import dataclasses
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from learner.arms import ArmConfig, resolve_arm
from learner.features import encode_histories
from learner.index import IndexConfig, ItemIndex, build_index, read_index, write_index
from learner.model import SequenceRecommender, model_config_from_dict
from learner.snapshot_checks import check_agrees, check_weights_fit
from learner.snapshot_store import (
    LATEST,
    fsync_dir,
    latest_version,
    list_versions,
    prune,
    regular_file,
    remove_stale,
    sha256,
    version_dir,
    write_latest,
)
from learner.vocab import FIRST_INDEX, UNKNOWN_INDEX, Vocabularies, Vocabulary
from recoil.core.records import EXCLUDE_SEEN, HistoryItem, TrainingExample
from recoil.core.topics import TRAINING_EXAMPLES

__all__ = [
    "LATEST", "ItemMeta", "Snapshot", "SnapshotError", "SnapshotInfo", "kafka_announcer",
    "latest_version", "list_versions", "load_snapshot", "publish_snapshot", "update_items_meta",
    "version_dir",
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
        """s per history, (B, D) float32, with the arm's input transform applied."""
        batch = encode_histories(histories, self.vocabs, self.max_len, self.arm)
        # inference_mode, not no_grad: no version counters or view tracking; measured
        # 5-8% off serving's batches of 1-64 (bench serving)
        with torch.inference_mode():
            return self.model.user_state(batch).numpy()  # (B, D)

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
    embeddings = model.item_embeddings().detach().cpu().numpy().astype(np.float32)  # (rows, D)
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
        expected = model.user_state(batch.to(next(model.parameters()).device)).cpu().numpy()
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
