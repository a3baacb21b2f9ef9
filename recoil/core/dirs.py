"""Directories a command writes into, checked before its work starts: an experiment or a
benchmark that finds its ``--out`` unusable only when it writes its results has wasted
the whole run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from recoil.core.errors import ConfigError


def ensure_directory(path: Path, flag: str, purpose: str) -> None:
    """Create ``path`` (and its parents) if missing; ``ConfigError`` naming ``flag`` if it
    is a file or cannot be created. ``purpose`` says what belongs there. An existing
    directory is taken as it is: a reader (serving, over a read-only snapshot store)
    needs no write access."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{flag} {path} is a file, not a directory; give {purpose}") from None
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path} cannot be created ({exc.strerror or exc}); give {purpose} that "
            "exists or that this user can create"
        ) from None


def check_directory(path: Path, flag: str, purpose: str) -> None:
    """``ConfigError`` naming ``flag`` unless ``path`` is a writable directory or could be
    created as one; creates nothing (a command that stops on a bad input leaves no trace)."""
    existing = path
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except OSError as exc:  # a name longer than the system takes: exists() raises, no False
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}; give {purpose}") from None
    if existing == path and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a directory; give {purpose}")
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path} cannot be created: {existing} is a file; give {purpose}")
    verb = "is not writable" if existing == path else f"cannot be created in {existing}"
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path} {verb} (permission denied); give {purpose}")
    # os.access answers from the permission bits, and to root it says yes everywhere:
    # /proc and /sys take no new entries whatever their bits say. Making (and removing)
    # a directory there is the real test; it leaves nothing behind.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".recoil-check-", dir=existing))
    except OSError as exc:
        raise ConfigError(f"{flag} {path} {verb} ({exc.strerror or exc}); give {purpose}") from None
