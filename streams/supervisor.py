"""Restart the stream worker after a deliberate crash: crash-only recovery, self-served.

When the worker finds that it cannot keep its guarantees in-process (a send
the broker refused, events processed but not committable at a rebalance, a
transaction that does not become visible), it exits at once with a
"restart me" status rather than let Faust's graceful shutdown commit past the
problem. A restart is what makes that safe: open transactions are aborted,
local state is rebuilt from committed data, and input is re-read from the
committed offsets -- the path the SIGKILL test exercises.

``recoil worker`` therefore runs the Faust worker as a child process and starts
it again after such an exit -- and after any other crash, for the same
reason (a few times per window, then it gives up and returns the status, so a
persistent fault still reaches the operator or the orchestrator). The child
learns how often it was restarted from ``RECOIL_WORKER_RESTARTS`` and exports it
as ``recoil_stream_worker_restarts_total``. A record that kills the worker
every time is not such a fault: the crash-loop rule (streams.crashloop) moves
past it after a restart or two. A clean exit
or a configuration error (status 2) ends the loop, and so do SIGTERM/SIGINT,
which are passed to the child.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from types import FrameType

from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import die_with_parent, recoil_command
from recoil.core.settings import to_flags
from streams.config import StreamsConfig

log = logging.getLogger(__name__)

EXIT_SEND_FAILED = 70  # streams.processor: a send failed
EXIT_UNCOMMITTABLE = 75  # streams.consumer: processed work that cannot be committed
EXIT_CONFIG = 2  # a configuration error: restarting cannot help
# Tells the child how often it was restarted, for recoil_stream_worker_restarts_total.
RESTARTS_ENV = "RECOIL_WORKER_RESTARTS"


def supervise(argv: Sequence[str], max_restarts: int = 5, window: float = 300.0) -> int:
    """Run ``argv`` until it exits for good; returns its last exit status."""
    restarts: deque[float] = deque()
    restarted = 0
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            env = {**os.environ, RESTARTS_ENV: str(restarted)}
            child = subprocess.Popen(list(argv), preexec_fn=die_with_parent, env=env)
            status = child.wait()
            if stopping or status in (0, EXIT_CONFIG):
                return status
            now = time.monotonic()
            restarts.append(now)
            restarted += 1
            while restarts and now - restarts[0] > window:
                restarts.popleft()
            if len(restarts) > max_restarts:
                log.critical(
                    "worker exited %d times with status %d within %.0fs: giving up",
                    len(restarts),
                    status,
                    window,
                )
                return status
            log.warning(
                "worker exited with status %d (restart from committed state); restarting", status
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def worker_command(
    settings: KafkaSettings,
    config: StreamsConfig,
    *extra: str,
    supervised: bool = True,
    log_level: str | None = None,
) -> list[str]:
    """The argv of ``recoil worker`` for exactly this configuration.

    SASL/SSL settings are not in it: they travel in RECOIL_KAFKA_* variables.
    """
    args = [] if log_level is None else ["--log-level", log_level]
    args += ["worker", "--bootstrap-servers", settings.bootstrap_servers, *to_flags(config)]
    if not supervised:
        args.append("--no-supervise")
    return [*recoil_command(*args), *extra]
