"""The learner checkpoint's stream state: round trip through torch, old layouts, bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from learner.checkpoint import (
    STATE_FORMAT,
    STATE_KEY,
    StreamCheckpoint,
    read_resume_state,
)
from learner.snapshot import ItemMeta
from recoil.core.errors import ConfigError

STATE = StreamCheckpoint(
    arm="feature_and_labels",
    topic="training-examples",
    offsets={0: 12, 3: 7},
    vocab_items=("i1", "i2", "i3"),
    vocab_creators=("c1", "c2"),
    items_meta={"i1": ItemMeta("c1", "k1"), "i3": ItemMeta(None, None)},
    seen_ids=("e1", "e2"),
    examples_total=19,
    lineage_files={"trained.jsonl": 120, "trained.rank1.jsonl": 80},
)


def _save(path: Path, state: StreamCheckpoint | None = None, **lightning: Any) -> Path:
    checkpoint: dict[str, Any] = {
        "global_step": 5,
        "hyper_parameters": {"num_items": 4},
        "state_dict": {"w": torch.zeros(2)},
        **lightning,
    }
    if state is not None:
        state.to_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def test_the_state_round_trips_through_a_weights_only_load(tmp_path: Path) -> None:
    resume = read_resume_state(_save(tmp_path / "last.ckpt", STATE))
    assert resume.stream == STATE
    assert resume.step == 5 and resume.hparams == {"num_items": 4}
    assert resume.stream.lineage_bytes == 120
    vocabs = resume.stream.vocabularies()
    assert vocabs.items.ids() == ["i1", "i2", "i3"] and vocabs.creators.ids() == ["c1", "c2"]


def test_the_on_disk_layout_is_plain_data_under_its_key() -> None:
    checkpoint: dict[str, Any] = {}
    STATE.to_checkpoint(checkpoint)
    assert checkpoint == {
        STATE_KEY: {
            "format": STATE_FORMAT,
            "topic": "training-examples",
            "arm": "feature_and_labels",
            "offsets": {0: 12, 3: 7},
            "vocab_items": ["i1", "i2", "i3"],
            "vocab_creators": ["c1", "c2"],
            "items_meta": {"i1": ["c1", "k1"], "i3": [None, None]},
            "seen_ids": ["e1", "e2"],
            "examples_total": 19,
            "lineage_bytes": 120,
            "lineage_files": {"trained.jsonl": 120, "trained.rank1.jsonl": 80},
        }
    }


def test_a_one_process_checkpoint_without_lineage_files_still_loads(tmp_path: Path) -> None:
    checkpoint: dict[str, Any] = {}
    STATE.to_checkpoint(checkpoint)
    del checkpoint[STATE_KEY]["lineage_files"]  # written before DDP
    path = _save(tmp_path / "last.ckpt", **checkpoint)
    assert read_resume_state(path).stream.lineage_files == {"trained.jsonl": 120}


def test_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no learner checkpoint at .*last\.ckpt"):
        read_resume_state(tmp_path / "last.ckpt")


def test_an_unreadable_file_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="cannot be read as a checkpoint"):
        read_resume_state(path)


def test_a_foreign_checkpoint_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = _save(tmp_path / "last.ckpt")
    with pytest.raises(ConfigError, match="not a checkpoint of `recoil learn`"):
        read_resume_state(path)


def test_a_damaged_state_names_what_is_missing(tmp_path: Path) -> None:
    checkpoint: dict[str, Any] = {}
    STATE.to_checkpoint(checkpoint)
    del checkpoint[STATE_KEY]["offsets"]
    path = _save(tmp_path / "last.ckpt", **checkpoint)
    with pytest.raises(ConfigError, match=r"damaged .*'offsets'"):
        read_resume_state(path)
