"""A real Apache Kafka broker started as a child process: KRaft, one combined node.

Used by the test fixtures, ``recoil broker`` and ``recoil demo``. It formats
KRaft storage in a fresh temporary directory, listens on 127.0.0.1 on free ports,
writes the broker's own log to ``<workdir>/server.log`` and is stopped (only it,
never other JVMs) on ``stop()``. On Linux the child also receives SIGKILL if
its parent dies, so a killed test run leaves no broker behind.

Restarting on kept data (``workdir`` given, ``recoil broker --data-dir``): storage
that is already formatted is not formatted again. Kafka refuses a data directory
whose ``meta.properties`` names another cluster id, so the stored id is the one
used; the controller port of the previous start is reused too, because the
formatted quorum's voter set records that endpoint.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from recoil.broker.jars import kafka_classpath
from recoil.core.processes import die_with_parent

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")


@contextlib.contextmanager
def _quiet_kafka_clients() -> Iterator[None]:
    """While the broker starts, a refused connection is expected, not an error: kafka-python
    logs each one at ERROR (``kafka.conn``), so its loggers say nothing below CRITICAL here."""
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


_HANDED_OUT: set[int] = set()  # ports free_port has returned in this process
_HANDED_OUT_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a port nobody listens on right now, and that this process has
    not handed out before.

    Each probe socket is closed at once, so the kernel may offer the same port again
    (133 repeats in 2,000 calls here), and two roles given ports together could get
    one port between them: in a loop run the simulator bound its /metrics on the
    port meant for a serving process and read its own metrics as ``/snapshot``."""
    with _HANDED_OUT_LOCK:
        for _ in range(1000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise RuntimeError(f"no port on {host} that this process has not handed out already")


def stored_cluster_id(data: Path) -> str | None:
    """The cluster id formatted into ``data`` (its ``meta.properties``); None if unformatted."""
    meta = data / "meta.properties"
    if not meta.is_file():
        return None
    for line in meta.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id" and value.strip():
            return value.strip()
    raise RuntimeError(f"{meta} names no cluster.id: remove {data} to start with empty storage")


def stored_controller_port(config: Path) -> int | None:
    """The controller port a previous start wrote into ``config``; None if there is none."""
    if not config.is_file():
        return None
    for line in config.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "controller.quorum.bootstrap.servers":
            port = value.strip().rsplit(":", 1)[-1]
            return int(port) if port.isdigit() else None
    return None


def server_properties(
    host: str, port: int, controller_port: int, log_dir: Path, extra: dict[str, str]
) -> str:
    """The broker's configuration: single node, replication 1, fast group joins."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        # One node: every internal topic has a single replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # No artificial wait before the first rebalance of a new group.
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
    }
    props.update(extra)
    return "".join(f"{key}={value}\n" for key, value in props.items())


class EmbeddedKafka:
    """Start, wait for and stop one Kafka broker process.

    ``bootstrap_servers`` is valid once ``start()`` returns. ``log_file`` holds
    everything the broker logged, for a failing test to print.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        workdir: Path | None = None,
        heap: str = "768m",
        extra_properties: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.controller_port = free_port(host)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="recoil-kafka-"))
        self.heap = heap
        self.extra_properties = extra_properties or {}
        self.log_file = self.workdir / "server.log"
        self.cluster_id: str | None = None  # known once start() has formatted or found storage
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def _java(self, libs: Path, main: str, *args: str) -> list[str]:
        return [
            shutil.which("java") or "java",
            f"-Xmx{self.heap}",
            f"-Dkafka.logs.dir={self.workdir}",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 60.0) -> EmbeddedKafka:
        libs = kafka_classpath()
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        config = self.workdir / "server.properties"
        self.cluster_id = stored_cluster_id(data)
        if self.cluster_id is not None:  # kept data: same cluster, same quorum endpoint
            self.controller_port = stored_controller_port(config) or self.controller_port
        config.write_text(
            server_properties(
                self.host, self.port, self.controller_port, data, self.extra_properties
            )
        )
        if self.cluster_id is None:
            self.cluster_id = self._format(libs, config)
        out = (self.workdir / "broker.out").open("wb")
        self._process = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(config)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        out.close()
        self._wait_ready(timeout)
        return self

    def _format(self, libs: Path, config: Path) -> str:
        """Format empty KRaft storage for a new single-node cluster; return its id."""
        cluster_id = "-"
        while cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid: "-..." reads as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = self._java(
            libs, "kafka.tools.StorageTool", "format", "-t", cluster_id,
            "-c", str(config), "--standalone",
        )  # fmt: skip
        done = subprocess.run(fmt, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"formatting KRaft storage failed:\n{done.stdout}{done.stderr}")
        return cluster_id

    def _wait_ready(self, timeout: float) -> None:
        with _quiet_kafka_clients():
            self._wait_ready_quietly(timeout)

    def _wait_ready_quietly(self, timeout: float) -> None:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"Kafka broker exited early:\n{self.log_tail()}")
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000
                )
                try:
                    admin.list_topics()
                    return
                finally:
                    admin.close()
            except Exception as exc:  # the broker is still starting: retry until the deadline
                last_error = exc
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"Kafka broker not ready after {timeout}s ({last_error}):\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 80) -> str:
        """The last lines the broker logged (server.log, else its stdout)."""
        for path in (self.log_file, self.workdir / "broker.out"):
            if path.exists() and path.stat().st_size:
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(the broker logged nothing)"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self) -> int:
        """Block until the broker exits; return its exit status."""
        assert self._process is not None, "start() first"
        return self._process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker (controlled shutdown), SIGKILL it if it hangs."""
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._own_workdir and os.environ.get("RECOIL_KEEP_BROKER_DIR") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EmbeddedKafka:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
