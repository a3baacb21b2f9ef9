"""The recommend API under generated bodies: every request gets a 200 or a 4xx with a
reason, in strict JSON, from a real snapshot (model and FAISS index) behind a real server.

Hypothesis writes bodies that are almost right (history items as objects and rows, with
one field at a time wrong in type, range or spelling, known and unknown item ids, any k,
``exclude_seen`` and ``unknown_items``), plus raw bytes. The examples hand-picked in
test_serving_robustness.py say what each refusal reads; this says no input outside them
reaches a 500 or an answer that is not JSON. One server serves every generated example:
a fresh one each would spend the test's time on start-up.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from learner.snapshot import Snapshot, load_snapshot
from learner.snapshot_publish import publish_snapshot
from learner.synthetic import synthetic_examples
from recoil.core.records import HISTORY_COLUMNS, NUM_DWELL_BUCKETS, NUM_GAP_BUCKETS
from serving.app import SnapshotHolder, create_app
from serving.metrics import ServingMetrics
from serving.requests import MAX_K
from tests.support.snapshots import untrained_parts
from tests.support.strict_json import strict_json

ARM = "feature_and_labels"
ANSWERS = {200, 400, 413, 422}  # what a body may get; 415 needs a Content-Type, 408 a stall


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    torch.manual_seed(0)
    examples = synthetic_examples(num_users=6, events_per_user=20, num_items=40, seed=0)
    model, vocabs, meta = untrained_parts(examples, ARM, dim=8, max_len=8, seed=0)
    store = tmp_path_factory.mktemp("store")
    publish_snapshot(Path(store), model, vocabs, ARM, meta, 1, {0: 1})
    return load_snapshot(store)


class _Server:
    """One real server over ``snapshot`` on its own event loop, for synchronous tests."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.loop = asyncio.new_event_loop()
        self.registry = CollectorRegistry()
        app = create_app(SnapshotHolder(snapshot), None, self.registry,
                         ServingMetrics(self.registry))  # fmt: skip
        self.client: TestClient[Any, Any] = TestClient(TestServer(app), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def post(self, path: str, body: bytes) -> tuple[int, Any]:
        async def send() -> tuple[int, str]:
            async with self.client.post(path, data=body) as response:
                return response.status, await response.text()

        status, text = self.loop.run_until_complete(send())
        return status, strict_json(text)

    def fives(self) -> float:
        return sum(
            sample.value
            for metric in self.registry.collect()
            for sample in metric.samples
            if sample.name == "recoil_serving_requests_total"
            and sample.labels["status"].startswith("5")
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def server(snapshot: Snapshot) -> Iterator[_Server]:
    running = _Server(snapshot)
    yield running
    running.close()


# --- bodies -------------------------------------------------------------------------------

_ODD = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.integers(), max_size=2), st.just({"x": 1}),
    st.integers(min_value=10**300, max_value=10**400),
)  # fmt: skip


def _item_ids(snapshot: Snapshot) -> st.SearchStrategy[str]:
    known = snapshot.item_ids()[:20]
    return st.one_of(st.sampled_from(known), st.text(min_size=1, max_size=6))


def _fields(snapshot: Snapshot) -> st.SearchStrategy[dict[str, Any]]:
    """One valid history item's fields."""
    return st.fixed_dictionaries({
        "item_id": _item_ids(snapshot),
        "creator_id": st.one_of(st.sampled_from(["c0", "c1"]), st.text(min_size=1, max_size=4)),
        "cluster_id": st.one_of(st.none(), st.text(max_size=4)),
        "disliked": st.one_of(st.booleans(), st.sampled_from([0, 1])),
        "dwell_bucket": st.integers(0, NUM_DWELL_BUCKETS - 1),
        "gap_bucket": st.integers(0, NUM_GAP_BUCKETS - 1),
        "timestamp": st.one_of(st.integers(-(10**12), 10**12), st.floats(-1e12, 1e12)),
    })  # fmt: skip


@st.composite
def _recommend_body(draw: st.DrawFn, snapshot: Snapshot) -> dict[str, Any]:
    """A valid body (items as objects or rows, known and unknown ids, every option), and
    in about half of them one thing made wrong: a field's value or presence, a row's
    length, ``k``, ``exclude_seen``, ``unknown_items`` or an extra field."""
    items: list[Any] = draw(st.lists(_fields(snapshot), max_size=12))
    body: dict[str, Any] = {"history": items}
    if draw(st.booleans()):
        body["k"] = draw(st.integers(1, MAX_K))
    if draw(st.booleans()):
        body["exclude_seen"] = draw(st.booleans())
    if draw(st.booleans()):
        body["unknown_items"] = draw(st.sampled_from(["ignore", "reject"]))
    wrong = draw(st.sampled_from(["none", "none", "none", "field", "row", "body"]))
    if wrong == "field" and items:
        fields = draw(st.sampled_from(items))
        name = draw(st.sampled_from(sorted(fields)))
        if draw(st.booleans()):
            fields[name] = draw(_ODD)
        else:
            del fields[name]
    rows = draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items)))
    body["history"] = [
        [fields.get(name) for name in HISTORY_COLUMNS] if as_row else fields
        for fields, as_row in zip(items, rows, strict=True)
    ]
    if wrong == "row" and any(rows):
        row = next(item for item in body["history"] if isinstance(item, list))
        del row[draw(st.integers(0, len(row) - 1)) :]
    elif wrong == "body":
        name = draw(st.sampled_from(["k", "exclude_seen", "unknown_items", "history", "?"]))
        body[name if name != "?" else draw(st.text(max_size=6))] = draw(_ODD)
    return body


def _encode(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()  # NaN too: a client may send it


def _check_answer(status: int, answer: Any, body: Any) -> None:
    assert status in ANSWERS, (status, answer, body)
    if status != 200:
        assert isinstance(answer["reason"], str) and answer["reason"], answer
        return
    k = body.get("k", 10)
    for items in [answer["items"]] if "items" in answer else answer["results"]:
        ids = [item["item_id"] for item in items]
        assert len(ids) == len(set(ids)) <= k, answer
        assert all(math.isfinite(item["score"]) for item in items), answer


# --- the properties -----------------------------------------------------------------------

# Each example is a real HTTP round trip over one module-scoped server.
_FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)  # fmt: skip


@settings(_FUZZ, max_examples=250)
@given(data=st.data())
def test_generated_recommend_bodies_get_a_200_or_a_4xx_with_a_reason(
    server: _Server, snapshot: Snapshot, data: st.DataObject
) -> None:
    body = data.draw(_recommend_body(snapshot))
    status, answer = server.post("/recommend", _encode(body))
    _check_answer(status, answer, body)
    if status == 200 and body.get("exclude_seen", True) is True:
        seen = {
            (item.get("item_id") if isinstance(item, dict) else item[0]) for item in body["history"]
        }
        assert not seen & {item["item_id"] for item in answer["items"]}, (body, answer)
    assert server.fives() == 0


@settings(_FUZZ, max_examples=120)
@given(data=st.data())
def test_generated_batch_bodies_get_a_200_or_a_4xx_with_a_reason(
    server: _Server, snapshot: Snapshot, data: st.DataObject
) -> None:
    bodies = data.draw(st.lists(_recommend_body(snapshot), min_size=0, max_size=4))
    body: dict[str, Any] = {"histories": [b["history"] for b in bodies]}
    if bodies and "k" in bodies[0]:
        body["k"] = bodies[0]["k"]
    status, answer = server.post("/recommend/batch", _encode(body))
    _check_answer(status, answer, body)
    if status == 200:
        assert len(answer["results"]) == len(body["histories"])
    assert server.fives() == 0


@settings(_FUZZ, max_examples=150)
@given(raw=st.one_of(st.binary(max_size=64), st.text(max_size=64).map(str.encode)))
def test_arbitrary_bytes_get_a_200_or_a_4xx_with_a_reason(server: _Server, raw: bytes) -> None:
    for path in ("/recommend", "/recommend/batch"):
        status, answer = server.post(path, raw)
        assert status in ANSWERS, (path, raw, status, answer)
        assert status == 200 or answer["reason"], answer
    assert server.fives() == 0
