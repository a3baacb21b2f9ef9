"""learner.kafka_source.EndOffsets: lag's end offsets are asked off the training thread,
except after a rebalance, when lag must cover the partitions held now."""

from __future__ import annotations

import threading

import pytest

from learner.kafka_source import EndOffsets


class _Broker:
    """End offsets that grow by 10 an ask; an ask can be held until released."""

    def __init__(self) -> None:
        self.asks: list[set[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.asked = threading.Event()
        self.fail = False

    def ask(self, held: set[int]) -> dict[int, int]:
        self.asks.append(set(held))
        self.asked.set()
        assert self.release.wait(10), "the test never released the ask"
        if self.fail:
            raise RuntimeError("broker gone")
        return {p: 10 * len(self.asks) for p in held}


def test_a_due_refresh_does_not_hold_the_caller_and_is_read_once_it_comes() -> None:
    now = [0.0]
    broker = _Broker()
    ends = EndOffsets(broker.ask, every_s=2.0, clock=lambda: now[0])
    try:
        assert ends.current({0, 1}) == {0: 10, 1: 10}  # the first ask is waited for
        now[0] = 1.0
        assert ends.current({0, 1}) == {0: 10, 1: 10} and len(broker.asks) == 1  # not due
        broker.release.clear()
        broker.asked.clear()
        now[0] = 2.5
        # due: asked on the other thread while the caller gets the last answer at once
        assert ends.current({0, 1}) == {0: 10, 1: 10}
        assert broker.asked.wait(10)
        assert ends.current({0, 1}) == {0: 10, 1: 10}  # still asking: no second ask
        assert len(broker.asks) == 2
        broker.release.set()
        for _ in range(1000):  # the answer is read by the first call after it came
            if ends.current({0, 1}) == {0: 20, 1: 20}:
                break
            threading.Event().wait(0.01)
        assert ends.current({0, 1}) == {0: 20, 1: 20}
    finally:
        broker.release.set()
        ends.close()


def test_a_rebalance_asks_at_once_for_the_partitions_held_now() -> None:
    now = [0.0]
    broker = _Broker()
    ends = EndOffsets(broker.ask, every_s=2.0, clock=lambda: now[0])
    try:
        assert ends.current({0, 1}) == {0: 10, 1: 10}
        broker.release.clear()
        now[0] = 3.0
        ends.current({0, 1})  # a refresh under way for {0, 1}
        assert broker.asked.wait(10)
        releaser = threading.Timer(0.2, broker.release.set)
        releaser.start()
        # partition 1 revoked, 2 assigned: the refresh is waited for, then {0, 2} asked
        assert ends.current({0, 2}) == {0: 30, 2: 30}
        assert broker.asks == [{0, 1}, {0, 1}, {0, 2}]
        assert ends.current(set()) == {}  # holding none: no lag, and no ask
        now[0] = 10.0
        assert ends.current(set()) == {}  # nor when a refresh would be due
        # the next assignment waits for any ask under way before its own: none was made
        assert ends.current({0}) == {0: 40}
        assert broker.asks == [{0, 1}, {0, 1}, {0, 2}, {0}]
    finally:
        broker.release.set()
        ends.close()


def test_a_failed_refresh_keeps_the_last_answer(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    broker = _Broker()
    ends = EndOffsets(broker.ask, every_s=1.0, clock=lambda: now[0])
    try:
        assert ends.current({0}) == {0: 10}
        broker.fail = True
        now[0] = 5.0
        ends.current({0})
        for _ in range(1000):
            if "end offsets for lag" in caplog.text:
                break
            ends.current({0})
            threading.Event().wait(0.01)
        assert "end offsets for lag (keeping the last ones): broker gone" in caplog.text
        assert ends.current({0}) == {0: 10}
    finally:
        ends.close()
