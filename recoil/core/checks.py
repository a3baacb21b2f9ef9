"""Checks every setting and input boundary makes the same way.

A number must be finite as well as in range: NaN compares false both ways, so a
``x <= 0`` test lets it through, and ``inf`` passes ``>= 0``. A string must be UTF-8
text: JSON's ``\\ud800`` escape decodes to a lone surrogate, which no UTF-8 key,
header, store or response can hold.
"""

from __future__ import annotations

import math
from typing import Literal

from recoil.core.errors import ConfigError

MAX_SEED = 2**32 - 1  # the largest seed Lightning's seed_everything (numpy) takes


def check_finite(
    name: str,
    value: float,
    bound: Literal["> 0", ">= 0"],
    what: str = "a finite number",
    hint: str = "",
) -> None:
    """ValueError unless ``value`` is finite and ``bound`` holds (the config classes'
    ``__post_init__`` rule; ``recoil.core.settings.from_args`` names the flag).
    ``hint`` follows the bound, for what a boundary value means ("(0 = never)")."""
    if not (math.isfinite(value) and (value > 0 if bound == "> 0" else value >= 0)):
        raise ValueError(f"{name} must be {what} {bound}{' ' + hint if hint else ''}, got {value}")


def finite_number(value: object) -> float | None:
    """A decoded JSON number as a finite float; None for anything else: NaN and
    Infinity (Python's decoder takes them), an integer past a float's range (it reads
    4,300 digits, and ``float()`` overflows past ~1e308), a bool (an int to Python, no
    number to a client), any other type."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def check_port(name: str, port: int | None) -> None:
    """ConfigError unless ``port`` is None (not served) or a TCP port (0: any free one)."""
    if port is not None and not 0 <= port < 65536:
        raise ConfigError(f"{name}={port}: must be a TCP port in 1..65535, or 0 for any")


def utf8_error(text: str) -> UnicodeEncodeError | None:
    """Why ``text`` cannot be written as UTF-8 (a lone surrogate), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc
    return None
