"""The Faust adapter (streams.faust_internals): what the rest of streams/ relies on."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, cast

import faust
import pytest

from streams.faust_internals import CurrentEvent


class Event:
    """Stands in for a Faust event: only its identity matters here."""


def test_current_event_is_set_inside_the_block_and_restored_after() -> None:
    outer, inner = Event(), Event()
    assert faust.current_event() is None
    with CurrentEvent(cast(Any, outer)):
        assert faust.current_event() is outer
        with CurrentEvent(cast(Any, inner)):
            assert faust.current_event() is inner
        assert faust.current_event() is outer
    assert faust.current_event() is None


def test_current_event_is_restored_when_the_block_raises() -> None:
    with pytest.raises(KeyError), CurrentEvent(cast(Any, Event())):
        raise KeyError("x")
    assert faust.current_event() is None


@pytest.mark.parametrize(
    ("owner", "name"),
    [
        ("faust.transport.consumer:Consumer", "_new_offset"),
        ("faust.transport.consumer:Consumer", "_add_gap"),
        ("faust.transport.consumer:Consumer", "_commit_tps"),
        ("faust.transport.consumer:Consumer", "_drain_messages"),
        ("faust.transport.drivers.aiokafka:Consumer", "_new_consumer_thread"),
        ("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread", "_highwaters"),
        ("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread", "_ensure_consumer"),
        ("faust.app.base:App", "_new_transport"),
    ],
)
def test_every_faust_hook_the_adapter_overrides_still_exists(owner: str, name: str) -> None:
    """A Faust upgrade that renames a hook would silently bypass the override: fail here."""
    module_name, class_name = owner.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert callable(getattr(cls, name, None)), f"{owner}.{name} is gone"


def test_the_private_state_the_adapter_reads_is_still_set_by_faust() -> None:
    from faust.transport.consumer import Consumer

    init = inspect.getsource(Consumer.__init__)
    for name in ("_committed_offset", "_acked", "_acked_index", "_unacked_messages", "_gap",
                 "_read_offset", "_commit_every"):  # fmt: skip
        assert f"self.{name} =" in init, f"Consumer.{name} is no longer set in __init__"
    assert "_commit_fut" in inspect.getsource(Consumer.commit)
    assert "self._n_acked += 1" in inspect.getsource(Consumer.ack)


def test_the_fetch_loop_is_still_the_one_the_batch_drain_replaces() -> None:
    """drain_in_batches keeps what Faust's loop does per record: if Faust's loop changes
    what it reads or how it hands records over, re-read it (streams.faust_internals)."""
    from faust.transport.consumer import Consumer, Fetcher

    drain = inspect.getsource(Consumer._drain_messages)
    pieces = (
        "getmany(timeout=1.0)",
        "self._read_offset",
        "self._add_gap(tp, r_offset + 1, offset)",
        "self.wait_first(",
        "self.suspend_flow.wait()",
        "fetcher)._stopped.is_set",
    )
    for piece in pieces:
        assert piece in drain, f"Faust's _drain_messages no longer has {piece!r}"
    assert "_drain_messages(self)" in inspect.getsource(Fetcher)
    getmany = inspect.getsource(Consumer.getmany)  # what fetch_messages repeats
    repeated = (
        "self._wait_next_records(timeout)",
        "self.flow_active",
        "consumer_generation_id",
        "self._buffered_partitions",
        "self.perform_seek()",
        "to_message(tp, record)",
    )
    for piece in repeated:
        assert piece in getmany, f"Faust's getmany no longer has {piece!r}"
