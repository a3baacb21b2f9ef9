"""A lighter Faust monitor: the worker keeps its own Prometheus metrics.

Faust's ``Monitor`` updates a dozen counters, deques and timestamps for every
message, stream event and send, for its ``/stats`` pages; at thousands of
events a second that is a measurable share of the agent's time. This one keeps
only what Faust itself reads back (``stream_inbound_time`` for its livelock
warnings) and drops the rest of the per-event bookkeeping.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from faust.sensors.monitor import Monitor
from faust.types import TP


class QuietMonitor(Monitor):
    """Faust's monitor without per-event statistics."""

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        self.tp_read_offsets[tp] = offset

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = monotonic()

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        pass

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        pass

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> Any:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        pass

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass
