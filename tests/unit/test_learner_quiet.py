"""quiet_lightning: Lightning's logger and known-harmless warnings, restored afterwards."""

from __future__ import annotations

import logging
import warnings

from learner.quiet import quiet_lightning


def test_silences_lightning_and_the_named_warnings_then_restores() -> None:
    logger = logging.getLogger("lightning.pytorch")
    original = logger.level
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_lightning(".*not resumable.*"):
                assert logger.level == logging.WARNING
                warnings.warn("there is no `val_dataloader`", stacklevel=1)
                warnings.warn("the loader is not resumable", stacklevel=1)
                warnings.warn("something else", stacklevel=1)
            warnings.warn("the loader is not resumable", stacklevel=1)
        assert logger.level == logging.INFO
    finally:
        logger.setLevel(original)
    assert [str(w.message) for w in caught] == ["something else", "the loader is not resumable"]
