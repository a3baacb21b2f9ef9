"""Checks every setting and input boundary makes the same way.

A number must be finite as well as in range: NaN compares false both ways, so a
``x <= 0`` test lets it through, and ``inf`` passes ``>= 0``. A string must be UTF-8
text: JSON's ``\\ud800`` escape decodes to a lone surrogate, which no UTF-8 key,
header, store or response can hold.
"""

from __future__ import annotations

import errno
import math
import socket
from typing import Literal
from urllib.parse import urlsplit

from recoil.core.errors import ConfigError

MAX_SEED = 2**32 - 1  # the largest seed Lightning's seed_everything (numpy) takes
# The largest float32 (numpy.finfo(numpy.float32).max): a setting that training holds in a
# float32 tensor must not be larger, or it becomes inf there.
FLOAT32_MAX = 3.4028234663852886e38
MAX_THREADS = 1024  # torch's set_num_threads takes a C int; far past any core count


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


def check_listen(host: str, port: int, host_flag: str, port_flag: str) -> None:
    """ConfigError naming the flags unless a TCP server could listen on ``host:port`` now:
    ``host`` is an address of this machine (or resolves to one) and nothing listens on
    ``port`` there (0: any free port).

    A command checks this before its slow start (a broker connection, a child process,
    the JVM): the server's own bind error would come later, as a traceback, or from a
    child that a supervisor then restarts. Between this check and the real bind another
    process may still take the port; that rare case keeps the server's own error."""
    if not host.strip():
        raise ConfigError(
            f"{host_flag} is empty: give an address (127.0.0.1, or 0.0.0.0 for every interface)"
        )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:  # socket.gaierror; IDNA refuses some names
        raise ConfigError(
            f"{host_flag} {host[:80]}: not an address this machine can resolve ({exc}); "
            "give an IP address or a resolvable name"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # as the servers do (Python's http.server, aiohttp, the JVM): a port whose old
        # connections linger in TIME_WAIT is free; one with a listener still is not
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise bind_error(host, port, exc, host_flag, port_flag) from None


def bind_error(
    host: str, port: int, exc: OSError, host_flag: str = "--host", port_flag: str = "--port"
) -> ConfigError:
    """Why a server cannot bind ``host:port`` (``exc``, from bind), as the flags to change."""
    hints = {
        errno.EADDRINUSE: f"another process listens there; pick another {port_flag}, "
        "or 0 for any free one",
        errno.EADDRNOTAVAIL: "it is not an address of this machine; give one of its "
        "addresses, 127.0.0.1 or 0.0.0.0",
        errno.EACCES: f"ports below 1024 need privileges; pick a {port_flag} of 1024 or more",
    }
    hint = hints.get(exc.errno or 0, f"check {host_flag} and {port_flag}")
    return ConfigError(
        f"cannot listen on {host_flag} {host} {port_flag} {port}: {exc.strerror or exc}; {hint}"
    )


def utf8_error(text: str) -> UnicodeEncodeError | None:
    """Why ``text`` cannot be written as UTF-8 (a lone surrogate), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc
    return None


def http_url_problem(url: str) -> str | None:
    """Why ``url`` is no http(s) URL with a host that a client can request, or None. A
    space, a bad IPv6 host or a port past 65535 is otherwise a ValueError traceback from
    urllib at the first request (aiohttp's is an error per request)."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "it holds a space or a control character"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not 0..65535
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "it is not http(s)://HOST[:PORT]"
    return None
