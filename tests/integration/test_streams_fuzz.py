"""Fuzz a real worker on the real broker: random bytes and mutated valid events, under
random headers whose keys are mostly not UTF-8.

The records come from hypothesis strategies, drawn once with a fixed seed and
produced in one go (a broker round trip per example would take hours). Every
record must be accounted for -- a training example, a duplicate, or a dead
letter -- and the worker must never restart. The expected outcome of each
record comes from the same pure functions the worker uses (parse, key check,
per-user rule); records the rule would leave without output (no label, out
of order) are dropped from the input, so the identity below is exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recoil.core.events import InteractionEvent, Invalid, parse_event
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import ProcessGroup
from recoil.core.records import TrainingExample
from streams.dlq import DeadLetter
from streams.harness import (
    create_topics,
    metric,
    produce,
    read_topic,
    scrape,
    start_worker,
    wait_until,
)
from streams.processor import check_key
from streams.state import UserState, advance
from tests.support.header_keys import RawHeaderKey
from tests.support.streams import LABELS, fast_worker_config, metrics_url, processed, worker_topics

pytestmark = pytest.mark.integration

RECORDS = 2400  # drawn; a few are dropped (see the module docstring)
T0 = 1_700_000_000.0
USERS = [f"fz{u}" for u in range(12)]
FIELDS = ["event_id", "user_id", "item_id", "creator_id", "cluster_id", "timestamp", "surface",
          "dwell_seconds", "item_duration_seconds", "liked", "disliked", "dismissed",
          "schema_version"]  # fmt: skip

Headers = list[tuple[str, bytes | None]]
Record = tuple[bytes | None, bytes, Headers]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event's fields; event id and timestamp are set in input order later."""
    duration = draw(st.sampled_from([0.0, 15.0, 30.0, 60.0]))
    return {
        "user_id": draw(st.sampled_from(USERS)),
        "item_id": draw(st.text("abcdefghij0123456789", min_size=1, max_size=12)),
        "creator_id": draw(st.sampled_from(["c1", "c2", "c3"])),
        "cluster_id": draw(st.none() | st.sampled_from(["k1", "k2"])),
        "surface": draw(st.sampled_from(["home", "immersive"])),
        "dwell_seconds": draw(st.sampled_from([0.0, 1.0, 25.0]) | st.just(duration)),
        "item_duration_seconds": duration,
        "liked": draw(st.booleans()),
        "disliked": draw(st.booleans()),
        "dismissed": draw(st.booleans()),
    }


# What becomes of a drawn event: (kind, argument); valid events and retries weigh more.
ARGUMENTS: dict[str, st.SearchStrategy[Any]] = {
    "valid": st.none(),
    "retry": st.integers(1, 20),  # resend the n-th last record
    "drop_field": st.sampled_from(FIELDS),
    "set_field": st.tuples(st.sampled_from(FIELDS), json_values),
    "add_field": st.tuples(st.text(max_size=10), json_values),
    "flip_byte": st.tuples(st.integers(0, 400), st.integers(0, 255)),
    "truncate": st.integers(0, 400),
    "insert": st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=40)),
    "wrong_key": st.none() | st.binary(max_size=40),
    "bytes": st.binary(max_size=600),
    "big": st.tuples(st.integers(9_000, 100_000), st.binary(min_size=1, max_size=16)),
    "deep": st.integers(500, 4_000),  # [[[[...]]]]: RecursionError in the JSON decoder
    # an integer past a float's range (310+ digits) or past json's 4,300: both raised
    # out of validation once
    "huge_number": st.tuples(st.sampled_from(FIELDS), st.integers(310, 4_400)),
    # a lone surrogate (JSON's "\ud800" escape): valid JSON, no valid UTF-8 key
    "surrogate": st.tuples(st.sampled_from(FIELDS), st.integers(0xD800, 0xDFFF)),
}
KINDS = ["valid"] * 8 + ["retry"] * 3 + sorted(ARGUMENTS)
mutations = st.sampled_from(KINDS).flatmap(lambda k: st.tuples(st.just(k), ARGUMENTS[k]))
# headers the worker must not care about: keys of any bytes (most are not UTF-8, which
# the protocol forbids and aiokafka's parser refused; streams.tolerant_records)
header_lists = st.lists(
    st.tuples(st.binary(max_size=12).map(RawHeaderKey), st.binary(max_size=30)),
    max_size=3,
)
Plan = tuple[dict[str, Any], tuple[str, Any], Headers]


def draw_plans(count: int) -> list[Plan]:
    """``count`` (event, mutation, headers) triples, the same every run (derandomized)."""
    plans: list[Plan] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(events(), mutations, header_lists)
    def collect(event: dict[str, Any], mutation: tuple[str, Any], headers: Headers) -> None:
        plans.append((event, mutation, headers))

    collect()
    return plans


def build(plans: list[Plan]) -> list[Record]:
    """The records, in input order: event ids and timestamps follow the order."""
    records: list[Record] = []
    for n, (fields, (kind, arg), headers) in enumerate(plans):
        obj = {**fields, "event_id": f"fz-{n}", "timestamp": T0 + n, "schema_version": 1}
        value = json.dumps(obj).encode()
        key: bytes | None = obj["user_id"].encode()
        if kind == "retry":
            if records:
                records.append(records[max(0, len(records) - arg)])
                continue
        elif kind == "drop_field":
            del obj[arg]
            value = json.dumps(obj).encode()
        elif kind in ("set_field", "add_field"):
            obj[arg[0]] = arg[1]
            value = json.dumps(obj).encode()  # NaN and Infinity too: not JSON
        elif kind == "flip_byte":
            at = arg[0] % len(value)
            value = value[:at] + bytes([arg[1]]) + value[at + 1 :]
        elif kind == "truncate":
            value = value[: arg % len(value)]
        elif kind == "insert":
            at = arg[0] % len(value)
            value = value[:at] + arg[1] + value[at:]
        elif kind == "wrong_key":
            key = arg
        elif kind == "bytes":
            key, value = arg[:8] or None, arg
        elif kind == "big":
            value = (arg[1] * (arg[0] // len(arg[1]) + 1))[: arg[0]]
        elif kind == "deep":
            value = b"[" * arg + b"]" * arg
        elif kind == "huge_number":
            obj.pop(arg[0], None)
            value = json.dumps(obj)[:-1].encode() + f', "{arg[0]}": 1{"0" * arg[1]}}}'.encode()
        elif kind == "surrogate":
            obj[arg[0]] = f"s{chr(arg[1])}"  # json.dumps writes it as a \uXXXX escape
            value = json.dumps(obj).encode()
        records.append((key, value, headers))
    return records


def expected_outcomes(records: list[Record]) -> tuple[list[Record], dict[str, int]]:
    """Keep the records that yield output, and count examples, duplicates, dead letters."""
    states: dict[str, UserState] = {}
    kept: list[Record] = []
    counts = {"examples": 0, "duplicates": 0, "dead_letters": 0}
    for key, value, headers in records:
        parsed = parse_event(value)
        if isinstance(parsed, InteractionEvent):
            parsed = check_key(key, parsed) or parsed
        if isinstance(parsed, Invalid):
            counts["dead_letters"] += 1
            kept.append((key, value, headers))
            continue
        state = states.get(parsed.user_id, UserState())
        step = advance(state, parsed, LABELS, 100)
        if step.outcome in ("none", "out_of_order"):
            continue  # no output at all: left out of the input
        states[parsed.user_id] = step.state
        counts["duplicates" if step.outcome == "duplicate" else "examples"] += 1
        kept.append((key, value, headers))
    return kept, counts


def test_fuzzed_records_are_all_accounted_for_without_a_restart(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    records, want = expected_outcomes(build(draw_plans(RECORDS)))
    assert len(records) >= 2000
    assert min(want.values()) >= 100, want  # every outcome, many times
    config = fast_worker_config(
        **worker_topics(topic_name), data_dir=tmp_path / "data", batch_size=200
    )
    create_topics(kafka, config)
    url = metrics_url(config)
    with ProcessGroup(tmp_path / "logs") as group:
        worker = start_worker(group, "worker", kafka, config)
        produce(kafka, config.input_topic, [(k, v) for k, v, _ in records],
                [headers for _, _, headers in records])  # fmt: skip
        wait_until(lambda: processed(url) >= len(records), 300, "all records processed",
                   [worker], interval=1.0)  # fmt: skip
        examples = read_topic(kafka, config.output_topic,
                              lambda rs: len(rs) >= want["examples"], 120)  # fmt: skip
        letters = read_topic(kafka, config.dlq_topic,
                             lambda rs: len(rs) >= want["dead_letters"], 120)  # fmt: skip
        samples = scrape(url)
        group.check()
        log = worker.log_file.read_text()

    duplicates = metric(samples, "recoil_stream_events_total", outcome="duplicate")
    assert len(examples) + (duplicates or 0) + len(letters) == len(records)
    got = {"examples": len(examples), "duplicates": duplicates, "dead_letters": len(letters)}
    assert got == want
    assert len({TrainingExample.from_json(r.value).event_id for r in examples}) == len(examples)
    for record in letters:  # every dead letter reads back and fits
        DeadLetter.from_record(record.key, record.value, record.headers)
    assert metric(samples, "recoil_stream_worker_restarts_total") == 0
    assert metric(samples, "recoil_stream_same_offset_restarts_total") == 0
    assert metric(samples, "recoil_stream_skipped_records_total") == 0
    assert (metric(samples, "recoil_stream_reread_batches_total") or 0) > 0  # keys hit
    assert "restarting" not in log
