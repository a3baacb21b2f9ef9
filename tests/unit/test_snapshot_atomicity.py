"""A reader polling the store while a writer publishes never sees half a snapshot."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from learner.snapshot import latest_version, load_snapshot, version_dir
from learner.snapshot_publish import publish_snapshot
from tests.unit.test_snapshot import ARM, _trained_parts

torch.set_num_threads(1)

FILES = {
    "manifest.json", "model.safetensors", "vocab_items.json", "vocab_creators.json",
    "items.json", "item_embeddings.npy", "index.faiss",
}  # fmt: skip


def test_reader_never_sees_a_partial_snapshot(tmp_path: Path) -> None:
    model, vocabs, meta, _ = _trained_parts()
    versions = 12
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for step in range(versions):
                with torch.no_grad():  # a new model each time: the reader must see matching files
                    model.item_embeddings().add_(0.01)
                publish_snapshot(tmp_path, model, vocabs, ARM, meta, step, {0: step}, keep=0)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[int] = []
    polls = 0
    while writer.is_alive() or latest_version(tmp_path) != (seen[-1] if seen else None):
        polls += 1
        version = latest_version(tmp_path)
        if version is None:
            continue
        names = {p.name for p in version_dir(tmp_path, version).iterdir()}
        assert names == FILES, f"version {version} visible with files {sorted(names)}"
        if not seen or version > seen[-1]:
            snap = load_snapshot(tmp_path, version)  # checksums of every file
            assert snap.version == version and snap.offsets == {0: snap.step}
            seen.append(version)
    writer.join()
    assert not errors, errors
    assert seen == sorted(set(seen)) and seen[-1] == versions
    assert len(seen) >= 2 and polls > versions
