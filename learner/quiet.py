"""Keep Lightning's banner, tips and known-harmless warnings out of a caller's output."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# Harmless for every recoil trainer: none validates, and Lightning's pytree notice is noise.
_HARMLESS = (".*no `val_dataloader`.*", ".*LeafSpec.*")


@contextlib.contextmanager
def quiet_lightning(*harmless: str) -> Iterator[None]:
    """Lightning's logger at WARNING and its known-harmless warnings ignored, plus the
    warnings matching ``harmless`` (regular expressions); all restored afterwards."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in (*_HARMLESS, *harmless):
                warnings.filterwarnings("ignore", pattern)
            yield
    finally:
        logger.setLevel(level)
