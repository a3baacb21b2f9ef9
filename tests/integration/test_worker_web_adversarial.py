"""The stream worker's HTTP endpoints against a fuzzing client, on one real ``recoil worker``:
the history view (``GET /history/{user_id}``) and ``/metrics``.

Requests are written to the socket byte for byte (``_ask``): an HTTP client library would
re-encode or refuse the targets that matter here (a raw ``\\xff``, a bare ``..``). What
must hold: every request gets an answer, a bad one a 4xx with a reason (in JSON on the
history view, which speaks JSON), no request handler fails with a traceback, and the
worker goes on consuming. One worker serves the whole module; the forwarding test adds
a second member to its group for the time of the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from recoil.broker import EmbeddedKafka
from recoil.broker.embedded import free_port
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import Child, ProcessGroup
from streams.config import StreamsConfig
from streams.harness import create_topics, get_json, produce, start_worker, wait_until
from tests.support.streams import fast_worker_config, metrics_url, processed, watched_event

pytestmark = pytest.mark.integration


@dataclass
class RunningWorker:
    kafka: KafkaSettings
    config: StreamsConfig
    group: ProcessGroup
    child: Child
    root: Path

    @property
    def port(self) -> int:
        return self.config.web_port


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _ask(port: int, target: bytes, method: bytes = b"GET", timeout: float = 10.0) -> Answer:
    """One HTTP/1.1 request whose target is sent exactly as given; the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: worker\r\n"
                     b"Connection: close\r\nContent-Length: 0\r\n\r\n")  # fmt: skip
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    return Answer(int(status_line.split()[1]), headers, body)


def _history(answer: Answer) -> list[Any]:
    assert answer.status == 200, (answer.status, answer.body[:300])
    return list(answer.json()["history"])


@pytest.fixture(scope="module")
def worker(
    kafka_broker: EmbeddedKafka, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningWorker]:
    """One worker (at-least-once, in-memory table, 4 partitions) that has read dora's first
    event; its log is printed if a test of the module failed."""
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers)
    tag = f"web-adversarial.{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("worker-web")
    config = fast_worker_config(
        app_id=f"app.{tag}", input_topic=f"in.{tag}", output_topic=f"out.{tag}",
        dlq_topic=f"dlq.{tag}", data_dir=root / "data", store="memory",
        processing_guarantee="at_least_once", session_timeout=10.0,
    )  # fmt: skip
    create_topics(kafka, config)
    with ProcessGroup(root / "logs") as group:
        child = start_worker(group, "worker", kafka, config)
        produce(kafka, config.input_topic, [(b"dora", watched_event(1))])
        # the history view, not the processed count: a batch is counted before its table
        # writes, which wait for its sends to be acknowledged
        dora = f"http://127.0.0.1:{config.web_port}/history/dora"
        wait_until(lambda: len(get_json(dora)["history"]) == 1, 120, "dora's first event",
                   [child])  # fmt: skip
        yield RunningWorker(kafka, config, group, child, root)


@pytest.fixture
def alive(worker: RunningWorker) -> Iterator[RunningWorker]:
    """The worker, checked after the test to be running, and to have logged no traceback of
    a request handler (aiohttp logs those from ``_handle_request``)."""
    yield worker
    worker.group.check()
    log = worker.child.log_file.read_text(errors="replace")
    assert "in _handle_request" not in log, worker.child.log_tail(80)


# --- user ids as a fuzzing client sends them -----------------------------------------------

# path after /history/ -> the user id the worker answers for (query strings are ignored)
ANSWERED: list[tuple[bytes, str]] = [
    (b"dora", "dora"),
    (b"dora?k=3&x=%ff&&=", "dora"),
    (b"%C3%BC", "ü"),
    (b"%F0%9F%98%80", "\U0001f600"),
    (b"a%2Fb", "a/b"),
    (b"%2E%2E", ".."),
    (b"%2e", "."),
    (b"a%00b", "a\x00b"),
    (b"a%20b", "a b"),
    (b"%25ff", "%ff"),  # an escaped percent sign is a percent sign
    (b"%zz", "%zz"),  # and one that starts no escape is taken as itself
    (b"x" * 256, "x" * 256),  # the longest id an event may carry
]

# path after /history/ -> a fragment of the 400's reason
REFUSED: list[tuple[bytes, str]] = [
    # yarl leaves an escape that does not decode to UTF-8 as it was: the worker answered
    # the user literally named "%ff" (the same as /history/%25ff) for a user id that
    # cannot exist
    (b"%ff", "user id '%ff' is not UTF-8 once its %-escapes are decoded"),
    (b"%ED%A0%80", "user id '%ED%A0%80' is not UTF-8"),  # a lone surrogate
    (b"ok%C3", "user id 'ok%C3' is not UTF-8"),  # a character cut short
    # a dot segment is removed when a URL is resolved: forwarded to the owner, "/history/.."
    # became "/" and was answered 200 with the index page
    (b"..", "'..' is a path segment that URLs remove; escape its dots as %2E"),
    (b".", "'.' is a path segment that URLs remove; escape its dots as %2E"),
    # within aiohttp's 8,190-byte request line, but longer than any event's user id
    (b"x" * 8000, "has 8000 characters; ids have at most 256"),
]


def test_user_ids_reach_the_table_as_sent_or_get_a_400_that_says_why(
    alive: RunningWorker,
) -> None:
    for path, user in ANSWERED:
        answer = _ask(alive.port, b"/history/" + path)
        assert answer.status == 200, (path[:40], answer.status, answer.body[:300])
        body = answer.json()
        assert body["user_id"] == user, path[:40]
        assert (len(body["history"]) == 1) == (user == "dora"), path[:40]
    for path, reason in REFUSED:
        answer = _ask(alive.port, b"/history/" + path)
        assert (answer.status, answer.headers["content-type"]) == (
            400, "application/json; charset=utf-8"), (path, answer.body[:300])  # fmt: skip
        body = answer.json()
        assert body["error"] == "bad_user_id" and reason in body["reason"], (path, body)


def test_requests_refused_before_the_view_get_a_4xx(alive: RunningWorker) -> None:
    # aiohttp's parser refuses these before any handler runs: a plain-text 400
    for target in (b"/history/\xff", "/history/é".encode(), b"/history/" + b"x" * 10_000):
        answer = _ask(alive.port, target)
        assert answer.status == 400, (target[:40], answer.body[:200])
    # unknown paths: aiohttp's 404
    for target in (b"/history", b"/history/", b"/history/a/b", b"//history/dora", b"/nope"):
        assert _ask(alive.port, target).status == 404, target
    # a 1 MB target: the parser stops reading at 8,190 bytes, answers 400 and closes; the
    # rest of the send may then meet a closed socket
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        assert _ask(alive.port, b"/history/" + b"x" * 1_000_000).status == 400
    assert _history(_ask(alive.port, b"/history/dora")) != []
    # each is one warning line (recoil.core.protocol_log), not an ERROR with a traceback
    log = alive.child.log_file.read_text(errors="replace")
    assert "refused a request aiohttp could not parse, from 127.0.0.1: 400" in log
    assert "ERROR aiohttp.server" not in log, alive.child.log_tail(40)


def test_faust_diagnostic_views_answer_an_unknown_table_with_a_404(alive: RunningWorker) -> None:
    """Faust's /router/{name}/ raised KeyError for a table it lacks: a 500 and a traceback
    for every such request (the ``alive`` fixture checks the log)."""
    for target in (b"/router/nope/", b"/router/%ff/", b"/router/" + b"n" * 5000 + b"/"):
        answer = _ask(alive.port, target)
        assert answer.status == 404, (target[:40], answer.body[:200])
        assert answer.json()["error"] == "unknown_table"
    assert _ask(alive.port, b"/router/history/dora/").status == 200  # the real table's


def test_other_methods_get_a_json_405_that_names_the_allowed_ones(alive: RunningWorker) -> None:
    for method in (b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"):
        answer = _ask(alive.port, b"/history/dora", method=method)
        assert (answer.status, answer.headers["allow"]) == (405, "GET,HEAD"), method
        assert answer.json() == {
            "error": "method_not_allowed",
            "reason": f"{method.decode()} is not allowed on /history/{{user_id}}; use GET",
        }
    head = _ask(alive.port, b"/history/dora", method=b"HEAD")
    assert (head.status, head.body) == (200, b"")


def test_many_concurrent_requests_are_answered_and_the_worker_goes_on_consuming(
    alive: RunningWorker,
) -> None:
    targets = [b"/history/dora", b"/history/%ff", b"/history/u7", b"/history/\xff", b"/nope"]
    expected = {0: 200, 1: 400, 2: 200, 3: 400, 4: 404}
    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(lambda n: _ask(alive.port, targets[n % 5]).status, range(400)))
    assert statuses == [expected[n % 5] for n in range(400)]
    # still consuming: dora's next event shows in her history
    produce(alive.kafka, alive.config.input_topic, [(b"dora", watched_event(2))])
    wait_until(lambda: len(_history(_ask(alive.port, b"/history/dora"))) == 2, 30,
               "dora's second event in her history", [alive.child])  # fmt: skip


def test_metrics_answers_any_request_without_a_5xx(alive: RunningWorker) -> None:
    port = alive.config.metrics_port
    assert port is not None
    for method, target in [
        (b"GET", b"/metrics?name[]=%ff"), (b"GET", b"/%ff"), (b"GET", b"/\xff"),
        (b"GET", b"/" + b"x" * 10_000), (b"POST", b"/metrics"), (b"DELETE", b"/metrics"),
        (b"BREW", b"/metrics"),
    ]:  # fmt: skip
        answer = _ask(port, target, method=method)
        assert answer.status in (200, 405), (method, target[:40], answer.status)
    assert _ask(port, b"/metrics", method=b"POST").headers["allow"] == "OPTIONS,GET"
    assert _ask(port, b"/" + b"x" * 100_000).status == 414
    assert processed(metrics_url(alive.config)) >= 1


# --- a user whose partition another worker owns -------------------------------------------

FORWARD_LIMIT_S = 5.0  # the forward's own bound is 1.5 s; the rest is slack for 2 CPUs


def _owned_by(worker: RunningWorker, url: str) -> str:
    """A user id (u0, u1, ...) whose partition the group member at ``url`` owns, as the
    worker's router says."""
    for n in range(200):
        if get_json(f"http://127.0.0.1:{worker.port}/router/history/u{n}/") == url:
            return f"u{n}"
    raise AssertionError(f"no user of u0..u199 is owned by {url}")


def test_a_user_owned_by_a_worker_that_hangs_or_is_gone_is_a_503_in_bounded_time(
    alive: RunningWorker,
) -> None:
    other = replace(alive.config, data_dir=alive.root / "data-other", web_port=free_port(),
                    metrics_port=free_port())  # fmt: skip
    peer = start_worker(alive.group, "other", alive.kafka, other)
    try:
        peer_url = f"http://127.0.0.1:{other.web_port}"
        wait_until(lambda: peer_url in get_json(f"http://127.0.0.1:{alive.port}/router/"), 60,
                   "the second worker to own partitions", [alive.child, peer])  # fmt: skip
        user = _owned_by(alive, peer_url)
        target = f"/history/{user}".encode()
        # forwarded: the owner's table answers
        produce(alive.kafka, alive.config.input_topic, [(user.encode(), watched_event(1, user))])
        wait_until(lambda: len(_history(_ask(alive.port, target))) == 1, 30,
                   f"{user}'s event in the history the owner answers", [peer])  # fmt: skip
        # Stopped, the owner takes the forward's connection and never answers: the 503
        # comes from the forward's bound (Faust's client waits up to 5 minutes).
        os.killpg(peer.process.pid, signal.SIGSTOP)  # its session: supervisor and worker
        started = time.monotonic()
        answer = _ask(alive.port, target, timeout=30)
        assert time.monotonic() - started < FORWARD_LIMIT_S
        assert answer.status == 503, answer.body[:300]
        assert answer.json() == {
            "error": "owner_unreachable",
            "reason": f"the worker that owns user {user!r} ({peer_url}) did not answer "
            "within 1.5 s; ask again once the group has rebalanced",
        }
        # Gone, it refuses the connection until the group rebalances: a 503, no traceback.
        alive.group.stop(peer, sig=signal.SIGKILL)
        alive.group.children.remove(peer)
        answer = _ask(alive.port, target, timeout=30)
        assert answer.status == 503, answer.body[:300]
        reason = answer.json()["reason"]
        assert reason.startswith(
            f"the worker that owns user {user!r} ({peer_url}) could not be reached: "
        ), reason
        # After the rebalance this worker owns the user and answers itself.
        wait_until(lambda: _ask(alive.port, target).status == 200, 60,
                   "the group to rebalance", [alive.child])  # fmt: skip
    finally:
        if peer in alive.group.children:
            alive.group.stop(peer, sig=signal.SIGKILL)
            alive.group.children.remove(peer)
