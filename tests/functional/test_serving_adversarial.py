"""The recommend API against hostile clients: what an adversarial review of serving found.

A real aiohttp server (``TestServer``, listening on 127.0.0.1) over the deterministic
``RankedSnapshot``, driven over real HTTP. Each test pins a hole the review found, or
the rule it checked: a body of millions of tiny values no longer holds the parsing
thread for seconds (queueing every large request behind it); ids holding lone
surrogates are a 400, not echoed back as JSON that strict parsers refuse; a 422's
reason stays short however long the ids sent; and one bad or poisoned request in a
concurrent micro-batch leaves the others their own answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp.test_utils import TestClient

from recoil.core.records import HistoryItem
from serving.requests import LARGE_BODY_BYTES, MAX_BODY_BYTES
from tests.support.ranked import RankedSnapshot
from tests.support.serving_app import fives, serving
from tests.support.strict_json import strict_json

CATALOGUE = 20  # RankedSnapshot's items i0..i19
KNOWN = {f"i{j}" for j in range(CATALOGUE)}


class PoisonedSnapshot(RankedSnapshot):
    """Fails any call whose histories hold the item "poison" (a snapshot bug that one
    request's data trips): the micro-batcher must fail only that request."""

    def recommend(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = True
    ) -> list[list[tuple[str, float]]]:
        if any(item.item_id == "poison" for history in histories for item in history):
            raise RuntimeError("the snapshot cannot answer a history holding 'poison'")
        return super().recommend(histories, k, exclude_seen)

    def unknown_items(self, item_ids: Iterable[str]) -> list[str]:
        return [i for i in super().unknown_items(item_ids) if i != "poison"]


async def _post(client: TestClient[Any, Any], path: str, body: bytes) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    async with client.post(path, data=body, headers=headers) as response:
        return response.status, await response.text()


def _row(item: str, t: float = 1.0) -> list[Any]:
    return [item, "c", None, 0, 3, 1, t]


# --- 1: bodies of millions of tiny values -------------------------------------------------


def _bomb(opening: bytes, unit: bytes) -> bytes:
    """A body just under MAX_BODY_BYTES: ``opening`` then ``unit`` repeated (2.8M "[],")."""
    count = (MAX_BODY_BYTES - len(opening) - 10) // len(unit)
    return opening + unit * (count - 1) + unit.rstrip(b",") + b"]}"


BOMBS = [
    ("/recommend", _bomb(b'{"history": [', b"[],"), "too many values in 'history'"),
    ("/recommend/batch", _bomb(b'{"histories": [', b"{},"), "too many values in 'histories'"),
    ("/recommend", b"{" + b",".join(b'"f%d": 0' % i for i in range(300_000)) + b"}",
     "too many values in the body"),
    ("/recommend", b'{"history": [], ' + b'"k": 1, ' * 400_000 + b'"k": 2}',
     "too many values in the body"),  # duplicate keys: one field, 400k values to decode
]  # fmt: skip


def test_bodies_of_millions_of_values_are_a_prompt_413_and_hold_up_no_other_request() -> None:
    # Before: each value cost the one parsing thread ~2.5 us of Python, so each of these
    # took seconds (7 s for the first on a 2-core machine) before its 413 or 400, and a
    # valid large batch sent meanwhile waited behind all of them.
    rows = [_row(f"i{10 + t % 10}", float(t)) for t in range(20)]
    legit = json.dumps({"histories": [rows] * 150, "k": 3}).encode()
    assert len(legit) > LARGE_BODY_BYTES  # parsed on the same thread as the bombs

    async def run() -> None:
        async with serving(RankedSnapshot(n=CATALOGUE)) as (client, registry):
            bombs = [asyncio.create_task(_post(client, p, b)) for p, b, _ in BOMBS]
            await asyncio.sleep(0.05)  # the bombs first: the batch queues behind them
            status, text = await _post(client, "/recommend/batch", legit)
            assert status == 200, text
            results = strict_json(text)["results"]
            assert len(results) == 150
            assert [e["item_id"] for e in results[0]] == ["i0", "i1", "i2"]  # none unseen
            for (path, body, reason), (status, text) in zip(
                BOMBS, await asyncio.gather(*bombs), strict=True
            ):
                assert len(body) <= MAX_BODY_BYTES
                answer = strict_json(text)
                assert (status, answer["error"]) == (413, "bad_request"), (path, answer)
                assert answer["reason"].startswith(reason), answer
            # No time asserted (speed is for benchmarks): the refusal's reason shows the
            # bound cut the walk short, where the whole 8 MiB was decoded before.
            assert fives(registry) == 0.0

    asyncio.run(run())


# --- 2: ids that are not Unicode text -----------------------------------------------------

SURROGATES = [
    ("/recommend", b'{"history": [["\\ud800", "c", null, 0, 3, 1, 1]], "unknown_items": "reject"}',
     "history[0].item_id holds a lone surrogate"),
    ("/recommend", b'{"history": [["i1", "c", "k\\udfff", 0, 3, 1, 1]]}',
     "history[0].cluster_id holds a lone surrogate"),
    ("/recommend/batch",
     b'{"histories": [[], [{"item_id": "i1", "creator_id": "\\ud83d"}]], "k": 2}',
     "histories[1]: history[0].creator_id holds a lone surrogate"),
]  # fmt: skip


def test_ids_holding_lone_surrogates_are_a_400_and_no_answer_holds_one() -> None:
    # Before: taken as unknown items; with "reject" the 422 named the id as "\ud800",
    # JSON that strict parsers (serde_json, for one) refuse, so the client could not
    # read why it was refused.
    async def run() -> None:
        async with serving(RankedSnapshot(n=CATALOGUE)) as (client, registry):
            for path, body, reason in SURROGATES:
                status, text = await _post(client, path, body)
                assert "\\ud8" not in text.lower() and "\\udf" not in text.lower(), text
                answer = strict_json(text)
                assert (status, answer["error"]) == (400, "bad_request"), answer
                assert answer["reason"].startswith(reason), answer
            # a surrogate pair is one code point, as Unicode text: served (as unknown)
            pair = b'{"history": [["i1\\ud83d\\ude00", "c", null, 0, 3, 1, 1]], "k": 2}'
            status, text = await _post(client, "/recommend", pair)
            assert status == 200 and strict_json(text)["unknown_items"] == 1
            assert fives(registry) == 0.0

    asyncio.run(run())


def test_a_422_names_long_unknown_ids_in_a_short_reason() -> None:
    # Before: the reason held the first 20 ids whole, as large as the body (8 MB).
    history = [_row("x" * 100_000 + str(j)) for j in range(30)]
    body = json.dumps({"history": history, "unknown_items": "reject"}).encode()

    async def run() -> None:
        async with serving(RankedSnapshot(n=CATALOGUE)) as (client, _):
            status, text = await _post(client, "/recommend", body)
            answer = strict_json(text)
            assert (status, answer["error"]) == (422, "unknown_items")
            assert answer["reason"].startswith("30 history items are unknown"), answer
            assert "and 10 more" in answer["reason"]
            assert len(text) < 3000, len(text)

    asyncio.run(run())


# --- 3: one concurrent micro-batch, good and bad requests mixed ---------------------------

BAD = [
    (b"nope", 400), (b"[]", 400), (b'{"history": [null]}', 400), (b'{"history": [], "k": 0}', 400),
    (b'{"history": [], "k": 10.5}', 400), (b'{"history": [], "k": true}', 400),
    (b'{"history": [], "k": 9223372036854775808}', 400),
    (b'{"history": [["zz", "c", null, 0, 3, 1, 1]], "unknown_items": "reject"}', 422),
    (b'{"history": [["\\ud800", "c", null, 0, 3, 1, 1]]}', 400),
    (b'{"history": [["i1", "c", null, 0, 99, 1, 1]]}', 400),
    (b'{"history": [], "extra": 1}', 400),
    (json.dumps({"history": [_row("i1")] * 1001}).encode(), 413),
]  # fmt: skip


def _good(b: int) -> dict[str, Any]:
    history = [_row(f"i{(5 * b + 3 * t) % 26}", float(t)) for t in range(b % 6)]  # i20+: unknown
    return {"history": history, "k": [1, 3, 7, 20, 500][b % 5], "exclude_seen": b % 3 != 0}


def test_good_requests_in_a_batch_with_bad_and_poisoned_ones_get_their_own_answers() -> None:
    goods = [_good(b) for b in range(60)]
    poison = json.dumps({"history": [_row("poison")], "k": 3}).encode()

    async def run() -> None:
        async with serving(PoisonedSnapshot(n=CATALOGUE)) as (client, registry):
            alone = []
            for body in goods:
                status, text = await _post(client, "/recommend", json.dumps(body).encode())
                assert status == 200, text
                alone.append(strict_json(text)["items"])
            sent: list[tuple[str, int, bytes]] = []
            for b, body in enumerate(goods):
                sent.append(("good", b, json.dumps(body).encode()))
                sent.append(("bad", b % len(BAD), BAD[b % len(BAD)][0]))
                if b % 10 == 0:
                    sent.append(("poison", 0, poison))
            answers = await asyncio.gather(*(_post(client, "/recommend", b) for _, _, b in sent))
            for (kind, i, _), (status, text) in zip(sent, answers, strict=True):
                answer = strict_json(text)
                if kind == "good":
                    assert status == 200 and answer["items"] == alone[i], (i, answer)
                    ids = [e["item_id"] for e in answer["items"]]
                    seen = {row[0] for row in goods[i]["history"]}
                    assert len(ids) == len(set(ids)) <= min(goods[i]["k"], CATALOGUE)
                    if goods[i]["exclude_seen"]:
                        assert not set(ids) & seen
                        assert len(ids) == min(goods[i]["k"], CATALOGUE - len(seen & KNOWN))
                    else:
                        assert len(ids) == min(goods[i]["k"], CATALOGUE)
                elif kind == "bad":
                    assert status == BAD[i][1] and answer["reason"], (BAD[i][0][:60], answer)
                else:  # the snapshot's fault, for this request alone
                    assert (status, answer["error"]) == (500, "internal_error"), answer
            assert fives(registry) == 6.0  # the poisoned ones, and nothing else

    asyncio.run(run())
