"""One throttled line, not a traceback, for each request aiohttp refuses before our code
(serving's API, the stream worker's history view).

aiohttp answers a request it cannot parse (a header line over its limit, bad chunking,
a method that is not a token, an invalid URL) with a plain 400 before any handler or
middleware runs, and logs ``Error handling request`` with the parser's traceback at
ERROR. The fault is the client's and the server is fine, so a fuzzing or broken client
filled the log with tracebacks that read like server errors. This filter rewrites those
records as one WARNING line that names the client and the parser's reason, logs the
first 20 and then every 1,000th (``recoil.core.log_throttle``), and counts them all.
Any other record of aiohttp's server logger passes unchanged.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

from recoil.core.log_throttle import worth_logging

SERVER_LOGGER = "aiohttp.server"


class ProtocolErrorFilter(logging.Filter):
    """Rewrites aiohttp's records of unparseable requests; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0  # unparseable requests seen, logged or not

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        self.refused += 1
        if not worth_logging(self.refused):
            return False
        client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        reason = " ".join(str(exc.message).split())[:200]  # the parser's, on one line
        record.msg = "refused a request aiohttp could not parse, from %s: %s %s (%d so far)"
        record.args = (client, exc.code, reason, self.refused)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_protocol_errors() -> ProtocolErrorFilter:
    """Install the filter on aiohttp's server logger (once a process) and return it."""
    logger = logging.getLogger(SERVER_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, ProtocolErrorFilter):
            return existing
    installed = ProtocolErrorFilter()
    logger.addFilter(installed)
    return installed
