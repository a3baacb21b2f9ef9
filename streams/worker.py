"""Run one stream worker until SIGTERM/SIGINT: topics, metrics server, Faust worker.

Local RocksDB state after a crash. Faust writes a table change to RocksDB
when the agent makes it, but in exactly-once mode the change only counts once
its transaction commits. After a SIGKILL the local files may hold changes of a
transaction that the broker then aborted -- events the table would call
"seen" although their examples were never committed, so a restart would drop
them as duplicates. The worker therefore writes ``CLEAN_SHUTDOWN`` into its data
directory after a graceful stop (everything committed), deletes it at start,
and when it is missing on an exactly-once start, deletes the local table
files: the table is rebuilt from the changelog, reading committed data only.
A clean restart keeps the files and only reads the changelog's tail.

The data directory also holds the crash note of :mod:`streams.crashloop`
(``IN_FLIGHT.json``): where the worker was, so that a record it died at
cannot stop it a second time. A graceful stop empties it. A record that aiokafka
itself cannot parse never reaches that guard; the one kind a broker stores (a header
key that is not UTF-8) is read by :mod:`streams.tolerant_records`.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from recoil.core.errors import BrokerUnreachableError
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.protocol_log import quiet_protocol_errors
from streams import tolerant_records
from streams.app import StreamsWorkerApp, build_app
from streams.config import StreamsConfig, describe
from streams.crashloop import CrashNotes
from streams.metrics import StreamMetrics
from streams.supervisor import RESTARTS_ENV
from streams.topics import prepare_topics

log = logging.getLogger(__name__)

CLEAN_MARKER = "CLEAN_SHUTDOWN"


def tables_dir(config: StreamsConfig) -> Path:
    """Where Faust keeps this app's RocksDB table files."""
    return config.app_data_dir / "v1" / "tables"


def discard_unclean_state(config: StreamsConfig) -> bool:
    """Apply the crash rule in the module docstring; True when local state was deleted."""
    marker = config.app_data_dir / CLEAN_MARKER
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    tables = tables_dir(config)
    if clean or config.store != "rocksdb" or not config.exactly_once or not tables.exists():
        return False
    log.warning(
        "no clean shutdown recorded in %s: deleting local table files %s; the table is "
        "rebuilt from its changelog (committed data only)",
        config.app_data_dir,
        tables,
    )
    shutil.rmtree(tables)
    return True


def count_restarts(metrics: StreamMetrics, notes: CrashNotes) -> None:
    """Start the restart counters where the last process left them (they never go back)."""
    metrics.worker_restarts.inc(int(os.environ.get(RESTARTS_ENV, "0") or 0))
    metrics.same_offset_restarts.inc(notes.counts.same_offset_restarts)
    metrics.skipped_records.inc(notes.counts.skipped_records)


def announce(line: str) -> None:
    """A bound address, on stdout (port 0 picks one) and in the log."""
    print(line, flush=True)
    log.info("%s", line)


def use_uvloop() -> None:
    """Run the worker's event loops (Faust's own and its consumer thread's) on uvloop.

    Faust pays several task and callback turns per message (``wait_first`` in its
    drain loop, stream iteration); uvloop's turns cost about a third less.
    """
    import asyncio

    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_worker(
    config: StreamsConfig,
    settings: KafkaSettings,
    customize: Callable[[StreamsWorkerApp], None] | None = None,
) -> int:
    """Run until stopped; returns the process exit status.

    ``customize`` sees the built app before it starts (tests use it to inject
    faults; nothing in production passes it).
    """
    import faust

    use_uvloop()  # before anything creates an event loop
    log.info("stream worker settings: %s", dict(describe(config)))
    try:
        layout = prepare_topics(settings, config)
    except BrokerUnreachableError as exc:  # one line, and the supervisor's restart, not exit 2
        log.error("%s", exc)
        return 1
    if layout.created:
        log.info(
            "created topics %s with %d partitions",
            ", ".join(layout.created),
            layout.input_partitions,
        )
    config.app_data_dir.mkdir(parents=True, exist_ok=True)
    discard_unclean_state(config)
    notes = CrashNotes.load(config.app_data_dir)

    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    count_restarts(metrics, notes)
    # a header key that is not UTF-8 must not stop the fetch
    tolerant_records.install(on_reread=metrics.reread_batches.inc)
    config = config.with_free_ports()  # port 0: any free port (once per process here)
    if config.metrics_port is not None:
        server, _ = start_http_server(
            config.metrics_port, addr=config.metrics_host, registry=registry
        )
        announce(f"metrics: http://{config.metrics_host}:{server.server_port}/metrics")
    announce(f"history view: http://{config.web_host}:{config.web_port}/history/{{user_id}}")

    parts = build_app(config, settings, metrics, layout.input_partitions, notes)
    quiet_protocol_errors()  # the history view's aiohttp: a bad request is one line
    if customize is not None:
        customize(parts)
    worker = faust.Worker(
        parts.app,
        loglevel=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    else:  # pragma: no cover - execute_from_commandline always raises SystemExit
        status = 0
    crashed = parts.app.crash_reason is not None or worker.crash_reason is not None
    if status == 0 and not crashed:
        (config.app_data_dir / CLEAN_MARKER).write_text("graceful stop: local state committed\n")
        notes.clear()  # nothing was in flight
    else:
        log.error(
            "worker stopped after a crash (%r); local state will be rebuilt",
            parts.app.crash_reason or worker.crash_reason,
        )
        status = status or 1
    return status
