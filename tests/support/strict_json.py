"""JSON as a strict parser reads it, for checking what serving answers."""

from __future__ import annotations

import json
from typing import Any


def strict_json(text: str) -> Any:
    """``json.loads(text)``, failing the test where ``text`` holds ``NaN`` or ``Infinity``:
    Python writes and reads them, but they are not JSON and stricter clients refuse them."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"answer holds {constant}, which is not JSON: {text[:300]}")

    return json.loads(text, parse_constant=refuse)
