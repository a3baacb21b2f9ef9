"""Two calls to a Prometheus server's HTTP API, shared by ``recoil demo --prometheus``
and the tests that start a real server: is it ready, and GET ``/api/v1/<path>``."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any


def is_ready(url: str) -> bool:
    """True once ``/-/ready`` answers 200; False while the server is not listening yet."""
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def api(url: str, path: str, **params: str) -> Any:
    """GET ``<url>/api/v1/<path>?<params>`` and return its ``data``; raise on an error status."""
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{query}", timeout=10) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"prometheus {path} failed: {body}")
    return body["data"]
