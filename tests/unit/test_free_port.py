"""free_port never hands out one port twice in a process: two roles of one loop given
ports together must not share one (the kernel offers repeats once a probe closes)."""

from __future__ import annotations

import socket

from recoil.broker.embedded import free_port


def test_two_thousand_ports_are_all_distinct_and_bindable() -> None:
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # free when handed out, and still free here
