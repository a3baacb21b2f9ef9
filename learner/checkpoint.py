"""The continuous learner's checkpoint: its files, and the stream state ``last.ckpt`` holds.

``<checkpoint_dir>/last.ckpt`` is a Lightning checkpoint (weights, optimizer state,
``global_step``, ``hyper_parameters``) to which the learner adds, under
``STATE_KEY``, where the stream stands: the Kafka offsets the model is trained
through, its vocabularies and item metadata, the de-duplication window, and how
much of every rank's lineage log (``trained.jsonl``, ``trained.rank<r>.jsonl``)
the model covers. ``StreamCheckpoint`` is that part, written by
``learner.continuous_loop`` (``to_checkpoint``) and read back at a restart by
``learner.continuous`` (``read_resume_state``, with ``torch.load(...,
weights_only=True)``: plain dicts, lists, strings and numbers only).

The layout is ``STATE_FORMAT``; a checkpoint written before ``lineage_files``
existed (one process) has only ``lineage_bytes`` and still loads.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from learner.distributed import lineage_file
from learner.snapshot import ItemMeta
from learner.vocab import Vocabularies, Vocabulary
from recoil.core.errors import ConfigError

CHECKPOINT_FILE = "last.ckpt"
LINEAGE_FILE = lineage_file(0)  # trained.jsonl: rank 0's log, the single process's
ROLLED_BACK_FILE = "rolled_back.jsonl"  # entries cut from trained.jsonl at a restart
STATE_KEY = "recoil_stream"  # the learner's entry in Lightning's checkpoint dict
STATE_FORMAT = "recoil.learner-state/1"
_WHAT_TO_DO = "point --checkpoint-dir at an empty directory or one the learner wrote"


@dataclass(frozen=True)
class StreamCheckpoint:
    """Where the stream stands for the checkpoint's model (every rank's part together)."""

    arm: str  # learner.arms name the model is trained under
    topic: str  # the training-examples topic
    offsets: dict[int, int]  # partition -> next offset, trained through
    vocab_items: tuple[str, ...]  # item ids, in row order (rows the model has)
    vocab_creators: tuple[str, ...]  # creator ids, in row order
    items_meta: dict[str, ItemMeta]  # creator and cluster of the items above
    seen_ids: tuple[str, ...]  # the de-duplication window: event ids trained, oldest first
    examples_total: int  # examples over the model's whole lineage
    lineage_files: dict[str, int]  # every rank's lineage log -> bytes the model covers

    @property
    def lineage_bytes(self) -> int:
        """How much of rank 0's log, ``trained.jsonl``, the model covers."""
        return self.lineage_files.get(LINEAGE_FILE, 0)

    def vocabularies(self) -> Vocabularies:
        """New vocabularies with the checkpoint's ids (the learner grows them)."""
        return Vocabularies(Vocabulary(self.vocab_items), Vocabulary(self.vocab_creators))

    def to_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add this state to Lightning's ``checkpoint`` dict (``on_save_checkpoint``)."""
        checkpoint[STATE_KEY] = {
            "format": STATE_FORMAT,
            "topic": self.topic,
            "arm": self.arm,
            "offsets": dict(self.offsets),
            "vocab_items": list(self.vocab_items),
            "vocab_creators": list(self.vocab_creators),
            "items_meta": {i: [m.creator_id, m.cluster_id] for i, m in self.items_meta.items()},
            "seen_ids": list(self.seen_ids),
            "examples_total": self.examples_total,
            "lineage_bytes": self.lineage_bytes,  # what a one-process reader looks for
            "lineage_files": dict(self.lineage_files),
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], source: object) -> StreamCheckpoint:
        """The state in a loaded checkpoint dict; ``ConfigError`` naming ``source`` if
        it has none or it is malformed."""
        state = checkpoint.get(STATE_KEY)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ConfigError(
                f"{source} is not a checkpoint of `recoil learn` ({STATE_FORMAT}); {_WHAT_TO_DO}"
            )
        try:
            # a checkpoint of one process has only trained.jsonl
            lineage = state.get("lineage_files", {LINEAGE_FILE: state["lineage_bytes"]})
            return cls(
                arm=str(state["arm"]),
                topic=str(state["topic"]),
                offsets={int(p): int(o) for p, o in state["offsets"].items()},
                vocab_items=tuple(state["vocab_items"]),
                vocab_creators=tuple(state["vocab_creators"]),
                items_meta={i: ItemMeta(c, k) for i, (c, k) in state["items_meta"].items()},
                seen_ids=tuple(state["seen_ids"]),
                examples_total=int(state["examples_total"]),
                lineage_files={str(n): int(b) for n, b in lineage.items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"{source} has a damaged {STATE_FORMAT} state ({type(exc).__name__}: {exc}); "
                + _WHAT_TO_DO
            ) from exc


@dataclass(frozen=True)
class ResumeState:
    """What a restart takes from ``last.ckpt`` besides the weights Lightning restores."""

    step: int  # Lightning's global_step
    hparams: dict[str, Any]  # the module's constructor arguments (the checkpoint's model)
    stream: StreamCheckpoint
    weights: dict[str, Any]  # Lightning's state_dict (checked against hparams at resume)


def read_resume_state(path: Path) -> ResumeState:
    """The resume state in the learner checkpoint at ``path`` (loaded with
    ``weights_only=True``); ``ConfigError`` if there is none or it is not one."""
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path} is not a file, as a learner checkpoint is; {_WHAT_TO_DO}")
    if not path.is_file():
        raise ConfigError(f"no learner checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message runs to paragraphs and suggests weights_only=False, which is
        # never the answer for a file the learner did not write (it would run its code)
        raise ConfigError(
            f"{path} cannot be read as a checkpoint: it is not a torch file, or holds objects "
            f"other than tensors and plain data (a weights-only load refuses them); {_WHAT_TO_DO}"
        ) from None
    except Exception as exc:  # truncated, or not a torch file
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise ConfigError(
            f"{path} cannot be read as a checkpoint ({reason}); {_WHAT_TO_DO}"
        ) from exc
    if not isinstance(checkpoint, dict):
        raise ConfigError(
            f"{path} is not a checkpoint of `recoil learn` ({STATE_FORMAT}); {_WHAT_TO_DO}"
        )
    stream = StreamCheckpoint.from_checkpoint(checkpoint, path)
    step, hparams = checkpoint.get("global_step"), checkpoint.get("hyper_parameters")
    weights = checkpoint.get("state_dict")
    if type(step) is not int or not isinstance(hparams, dict) or not isinstance(weights, dict):
        raise ConfigError(
            f"{path} lacks Lightning's global_step (a number), hyper_parameters or state_dict "
            f"(dicts); {_WHAT_TO_DO}"
        )
    return ResumeState(step, dict(hparams), stream, dict(weights))


def check_resumable(module: torch.nn.Module, weights: dict[str, Any], path: Path) -> None:
    """``ConfigError`` unless ``weights`` (a checkpoint's state_dict) load into ``module``
    (built from the same checkpoint's hyper_parameters) and are finite: checked at start,
    before Kafka, rather than inside ``trainer.fit`` (a traceback) or, for NaN, in every
    snapshot the learner then refuses to publish. Loads them, as Lightning will again."""
    try:
        on_load = getattr(module, "on_load_checkpoint", None)
        if on_load is not None:  # the tables may have grown since the module's hparams
            on_load({"state_dict": weights})
        module.load_state_dict(weights)
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"{path}: its weights do not fit its own hyper_parameters ({reason}); {_WHAT_TO_DO}"
        ) from None
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ConfigError(f"{path}: weight {name} holds NaN or infinite values; {_WHAT_TO_DO}")
