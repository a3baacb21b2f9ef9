"""The snapshot store's directory operations: versions, ``LATEST``, cleanup.

Layout and guarantees are documented in ``learner.snapshot``. Everything here
works on names alone (``regular_file``: on what a name is): ``v{version:08d}``
directories are complete snapshots, dot-names (``.tmp-*`` being written, ``.old-*``
being deleted, ``.LATEST.*``) are invisible to readers.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import time
import uuid
from pathlib import Path

LATEST = "LATEST"
# ASCII digits only: ``\d`` alone takes any script's digits, and a directory "v١٢٣٤٥٦٧٨"
# would read as version 12345678, whose directory ``version_dir`` names does not exist.
_VERSION_DIR = re.compile(r"^v(\d{8})$", re.ASCII)
_LATEST_TEXT = re.compile(r"\d{1,18}", re.ASCII)  # a version that fits an int64
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
    """The version ``LATEST`` names, or None if it is absent or names none (the directory
    scan then decides). Only its first bytes are read: it holds one number."""
    try:
        with (Path(store) / LATEST).open("rb") as f:
            text = f.read(64).strip()
    except FileNotFoundError:
        return None
    match = _LATEST_TEXT.fullmatch(text.decode("ascii", "replace"))
    return int(match.group()) if match else None


def regular_file(path: Path, max_bytes: int | None = None) -> None:
    """``ValueError`` unless ``path`` is a regular file (not a symlink, which may point
    anywhere, nor a FIFO or device, which block or never end) of at most ``max_bytes``;
    ``FileNotFoundError`` if it is absent."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise ValueError(f"{path} is {kind}")
    if max_bytes is not None and info.st_size > max_bytes:
        raise ValueError(f"{path} is {info.st_size} bytes, over the {max_bytes} expected")


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
