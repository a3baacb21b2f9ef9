"""A ``Recommender`` over the serving API, for probing a live model.

``top_k`` posts explicit histories to ``POST /recommend/batch``; every answer
names the snapshot version that produced it, and ``versions`` collects them so
a probe can tell whether a hot swap happened half way (then it is discarded).
With ``pinned=True`` the first answer from another version raises
``VersionChangedError`` at once, so a probe that would be discarded stops early
instead of spending the rest of its requests on a busy machine.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence

from recoil.core.records import EXCLUDE_SEEN, HistoryItem


class ServingError(RuntimeError):
    """The serving API refused or failed a request."""


class VersionChangedError(ServingError):
    """A pinned recommender got an answer from a second snapshot version."""


class HttpRecommender:
    def __init__(
        self, base_url: str, batch_size: int = 256, timeout: float = 30.0, pinned: bool = False
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.batch_size = batch_size
        self.timeout = timeout
        self.pinned = pinned
        self.versions: set[int] = set()

    def _post(self, path: str, body: object) -> dict[str, object]:
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return _json_object(path, resp.read())
        except urllib.error.HTTPError as exc:
            raise ServingError(f"{path}: {exc.code} {exc.read()[:300]!r}") from exc
        except OSError as exc:
            raise ServingError(f"{path}: {exc}") from exc

    def top_k(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = EXCLUDE_SEEN
    ) -> list[list[str]]:
        out: list[list[str]] = []
        for start in range(0, len(histories), self.batch_size):
            chunk = histories[start : start + self.batch_size]
            body = {
                "histories": [[h.to_row() for h in history] for history in chunk],
                "k": k,
                "exclude_seen": exclude_seen,
            }
            answer = self._post("/recommend/batch", body)
            try:
                version = int(answer["model_version"])  # type: ignore[call-overload]
                rows = [[item["item_id"] for item in row] for row in answer["results"]]  # type: ignore[attr-defined]
            except (KeyError, TypeError, ValueError) as exc:
                raise ServingError(f"/recommend/batch: not a batch answer: {exc!r}") from exc
            self.versions.add(version)
            if self.pinned and len(self.versions) > 1:
                raise VersionChangedError(f"snapshot versions {sorted(self.versions)} in one probe")
            out.extend(rows)
        return out

    def snapshot_version(self) -> int | None:
        """The version being served now, or None before the first snapshot."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/snapshot", timeout=self.timeout) as r:
                answer = _json_object("/snapshot", r.read())
            try:
                return int(answer["version"])  # type: ignore[call-overload]
            except (KeyError, TypeError, ValueError) as exc:
                raise ServingError(f"/snapshot: not a snapshot answer: {exc!r}") from exc
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                return None
            raise ServingError(f"/snapshot: {exc.code}") from exc
        except OSError as exc:
            raise ServingError(f"/snapshot: {exc}") from exc


def _json_object(path: str, body: bytes) -> dict[str, object]:
    """The JSON object of an answer, or ServingError: whatever answered on the port was
    not the serving API (another process's /metrics once did), and the prober logs that
    and tries again instead of stopping."""
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise ServingError(f"{path}: not JSON: {body[:120]!r}") from exc
    if not isinstance(answer, dict):
        raise ServingError(f"{path}: not a JSON object: {body[:120]!r}")
    return answer
