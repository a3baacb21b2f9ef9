"""The Faust adapter (streams.faust_internals): what the rest of streams/ relies on."""

from __future__ import annotations

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
