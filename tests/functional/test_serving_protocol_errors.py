"""Requests aiohttp refuses before our handlers (over-long headers, bad chunking, an
invalid method) cost one throttled warning line each, not an ERROR traceback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from recoil.core.protocol_log import SERVER_LOGGER, ProtocolErrorFilter
from tests.support.serving_app import serving

MALFORMED = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    b"POST /recommend HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
]


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    return answer


def test_unparseable_requests_are_a_400_and_one_warning_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> list[bytes]:
        async with serving() as (client, _):
            port = client.server.port
            assert port is not None
            answers = [await _raw(port, request) for request in MALFORMED * 6]
            healthy = await client.get("/healthz")  # the server is fine after all of them
            assert healthy.status == 200
            return answers

    with caplog.at_level(logging.DEBUG, logger=SERVER_LOGGER):
        answers = asyncio.run(run())
    assert all(answer.split(b" ")[1] == b"400" for answer in answers), answers
    records = [r for r in caplog.records if r.name == SERVER_LOGGER]
    assert records, "aiohttp logged nothing: the case is not exercised"
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in records), [
        (r.levelname, r.getMessage()) for r in records
    ]
    first = records[0].getMessage()
    assert first.startswith("refused a request aiohttp could not parse, from 127.0.0.1: 400 ")
    assert "\n" not in first and first.endswith("(1 so far)")
    # the first 20 are logged, then every 1,000th (24 sent)
    assert len(records) == 20


def test_other_records_of_the_server_logger_pass_unchanged() -> None:
    def record(exc: BaseException | None) -> logging.LogRecord:
        info: Any = (type(exc), exc, None) if exc else None
        return logging.LogRecord(SERVER_LOGGER, logging.ERROR, "f", 1, "Error %s", ("x",), info)

    kept = record(RuntimeError("a handler's own bug"))
    assert ProtocolErrorFilter().filter(kept)
    assert kept.levelno == logging.ERROR and kept.exc_info is not None
    assert kept.getMessage() == "Error x"
