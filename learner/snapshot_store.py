"""The snapshot store's directory operations: versions, ``LATEST``, cleanup.

Layout and guarantees are documented in ``learner.snapshot``. Everything here
works on names alone: ``v{version:08d}`` directories are complete snapshots,
dot-names (``.tmp-*`` being written, ``.old-*`` being deleted, ``.LATEST.*``)
are invisible to readers.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
import uuid
from pathlib import Path

LATEST = "LATEST"
_VERSION_DIR = re.compile(r"^v(\d{8})$")
_STALE_SECONDS = 600  # a dot-dir untouched this long belongs to a dead publisher


def version_dir(store: str | os.PathLike[str], version: int) -> Path:
    return Path(store) / f"v{version:08d}"


def list_versions(store: str | os.PathLike[str]) -> list[int]:
    """Published versions in the store, ascending."""
    root = Path(store)
    if not root.is_dir():
        return []
    found = (_VERSION_DIR.match(p.name) for p in root.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def latest_version(store: str | os.PathLike[str]) -> int | None:
    """The newest published version, or None for an empty (or absent) store.

    ``LATEST`` is the fast path; the directory scan covers a publisher that died
    between renaming its directory and replacing ``LATEST``.
    """
    versions = list_versions(store)
    latest = read_latest(store)
    candidates = [*versions[-1:], *([latest] if latest is not None else [])]
    return max(candidates) if candidates else None


def read_latest(store: str | os.PathLike[str]) -> int | None:
    try:
        text = (Path(store) / LATEST).read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_latest(root: Path, version: int) -> None:
    """Point ``LATEST`` at ``version`` unless it already names a newer one."""
    current = read_latest(root)
    if current is not None and current >= version:
        return
    tmp = root / f".LATEST.{uuid.uuid4().hex}"
    with tmp.open("w") as f:
        f.write(f"{version}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / LATEST)


def prune(root: Path, keep: int) -> None:
    """Remove all but the newest ``keep`` versions (renamed away first, then deleted);
    ``keep < 1`` keeps every version."""
    if keep < 1:
        return
    for version in list_versions(root)[:-keep]:
        doomed = root / f".old-{version:08d}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(version_dir(root, version), doomed)
        except FileNotFoundError:
            continue
        shutil.rmtree(doomed, ignore_errors=True)


def remove_stale(root: Path) -> None:
    """Delete half-written snapshots of publishers that died (untouched for a while)."""
    now = time.time()
    for path in root.iterdir():
        if path.name.startswith((".tmp-", ".old-")) and path.is_dir():
            try:
                if now - path.stat().st_mtime > _STALE_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
            except FileNotFoundError:
                continue
