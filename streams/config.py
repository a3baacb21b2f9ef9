"""Configuration of a stream worker: one frozen dataclass, validated at start.

Every field is a setting (:func:`recoil.core.settings.setting`): its default and help
text are defined here once, and ``recoil worker``'s flags, the supervisor's and the
loop's child command lines are derived from them. :meth:`StreamsConfig.validate` runs in
``__post_init__`` and raises :class:`recoil.core.errors.ConfigError` with a
message that names the setting and says what to fix, so a bad configuration
stops the worker before it touches Kafka.
"""

from __future__ import annotations

import dataclasses
import math
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from recoil.core import topics
from recoil.core.checks import check_port
from recoil.core.errors import ConfigError
from recoil.core.labels import LabelConfig, override_labels
from recoil.core.settings import Custom, setting

Store = Literal["rocksdb", "memory"]
Guarantee = Literal["exactly_once", "at_least_once"]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
STORES: tuple[Store, ...] = ("rocksdb", "memory")
GUARANTEES: tuple[Guarantee, ...] = ("exactly_once", "at_least_once")
COMPRESSIONS: tuple[Compression, ...] = ("none", "gzip", "snappy", "lz4", "zstd")

# Kafka's legal topic / group name characters.
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def label_config(history_length: int, overrides: Sequence[str] = ()) -> LabelConfig:
    """A LabelConfig from ``--history-length`` and ``--label NAME=VALUE`` overrides."""
    try:
        base = LabelConfig(history_length=history_length)
    except ValueError as exc:
        raise ConfigError(f"label settings: {exc}") from exc
    return override_labels(base, overrides, fixed=("history_length",))


def _add_label_arguments(parser: Any) -> None:
    parser.add_argument(
        "--history-length",
        type=int,
        default=LabelConfig().history_length,
        help="history items kept per user and put into each example",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a labelling setting of recoil.core.labels.LabelConfig, e.g. "
        "--label skip_weight=0.5 (repeatable)",
    )


def _label_flags(labels: LabelConfig) -> list[str]:
    """``--history-length`` and a ``--label`` for each setting off its default."""
    flags = ["--history-length", str(labels.history_length)]
    defaults = LabelConfig()
    for f in dataclasses.fields(LabelConfig):
        value = getattr(labels, f.name)
        if f.name != "history_length" and value != getattr(defaults, f.name):
            flags += ["--label", f"{f.name}={value}"]
    return flags


LABEL_FLAGS = Custom(
    add=_add_label_arguments,
    parse=lambda args: label_config(args.history_length, args.label),
    flags=_label_flags,
)


@dataclass(frozen=True)
class StreamsConfig:
    """Everything a stream worker needs besides the Kafka connection."""

    app_id: str = setting("recoil-streams", "consumer group / transactional-id / changelog prefix")
    input_topic: str = setting(topics.INTERACTIONS, "topic of interaction events, key = user id")
    output_topic: str = setting(topics.TRAINING_EXAMPLES, "topic of training examples (JSON)")
    # invalid events: a prefix of the bytes + headers (streams.dlq)
    dlq_topic: str = setting(topics.DLQ, "dead-letter topic of invalid events")
    # rocksdb restarts from local state after a clean stop
    store: Store = setting("rocksdb", "history table store (default rocksdb)")
    data_dir: Path = setting(Path("recoil-data/streams"), "RocksDB files go to DATA_DIR/APP_ID")
    # thresholds, weights, history length: --history-length and --label NAME=VALUE
    labels: LabelConfig = setting(default_factory=LabelConfig, custom=LABEL_FLAGS)
    # retries older than this many events of the user are processed again
    dedupe_window: int = setting(100, "recent event ids remembered per user for dedupe")
    state_cache_users: int = setting(
        10_000, "decoded user states kept in memory (about 10 KB each)"
    )
    processing_guarantee: Guarantee = setting(
        "exactly_once", "exactly_once: Kafka transactions; at_least_once: the fallback"
    )
    # existing topics keep their partitions
    partitions: int = setting(4, "partitions of topics the worker has to create")
    # 3 in production
    replication_factor: int = setting(1, "replicas of topics it creates (changelog too)")
    # 0.0.0.0 only behind a firewall
    web_host: str = setting("127.0.0.1", "history view bind address")
    # GET /history/{user_id}; Faust's default web port
    web_port: int = setting(6066, "history view port (0 = any free port; printed)")
    metrics_port: int | None = setting(
        None,
        "serve /metrics on HOST:PORT (default: off; 0 = any free port; the bound address is "
        "printed)",
    )
    metrics_host: str = setting("127.0.0.1", "/metrics bind address")
    # amortises sends, flushes and commits
    batch_size: int = setting(500, "events per agent batch (at most; a fetch may bring fewer)")
    # bounds the latency a batch adds (Faust's stream only: a fetch is handed over at once)
    batch_timeout: float = setting(0.05, "seconds a partial batch waits (--no-fetch-batches)")
    commit_interval: float = setting(1.0, "seconds between commits (= transaction length)")
    # a dead worker's partitions move after this
    session_timeout: float = setting(10.0, "consumer group session timeout, seconds")
    heartbeat_interval: float = setting(1.0, "seconds between heartbeats (<= a third of the above)")
    producer_linger: float = setting(0.005, "seconds a send waits to share a produce request")
    # Kafka's compression.type for everything the worker writes (examples, dead letters,
    # the table's changelog). An example repeats its user's history, so its batches shrink
    # several times over (docs/streams.md, "Compressed batches").
    producer_compression: Compression = setting(
        "none", "codec of the batches the worker writes: none, gzip, snappy, lz4 or zstd"
    )
    hole_grace: float = setting(2.0, "seconds a commit hole lasts before the broker is asked")
    # a partition's next record on the broker, never delivered and no later one to reveal it
    stall_grace: float = setting(10.0, "seconds a partition's unread records wait, then re-read")
    # strict commits + hole checks (faust #596/#606); off only to demo the bugs
    offset_guard: bool = setting(True, "commit like stock Faust (to reproduce faust #596/#606)")
    # whole fetches to the agent (streams.consumer); off: Faust's stream, event by event
    fetch_batches: bool = setting(
        True, "hand the agent events one by one through Faust's stream (take_events)"
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("app_id", "input_topic", "output_topic", "dlq_topic"):
            value = getattr(self, name)
            # '.' and '..' are no Kafka topics, and as an app id a path out of --data-dir
            if not _NAME.match(value) or value in (".", ".."):
                raise ConfigError(
                    f"{name}={value!r}: use 1-200 characters from letters, digits, '.', '_', '-' "
                    "(not '.' or '..')"
                )
        names = {self.input_topic, self.output_topic, self.dlq_topic}
        if len(names) != 3:
            raise ConfigError(
                "input, output and DLQ topics must differ "
                f"(got {self.input_topic!r}, {self.output_topic!r}, {self.dlq_topic!r})"
            )
        if self.store not in STORES:
            raise ConfigError(f"store={self.store!r}: choose one of {', '.join(STORES)}")
        if self.producer_compression not in COMPRESSIONS:
            raise ConfigError(
                f"producer_compression={self.producer_compression!r}: "
                f"choose one of {', '.join(COMPRESSIONS)}"
            )
        if self.processing_guarantee not in GUARANTEES:
            raise ConfigError(
                f"processing_guarantee={self.processing_guarantee!r}: "
                f"choose one of {', '.join(GUARANTEES)}"
            )
        for name in (
            "dedupe_window",
            "partitions",
            "batch_size",
            "replication_factor",
            "state_cache_users",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        for name, most in (("partitions", topics.MAX_PARTITIONS),
                           ("replication_factor", topics.MAX_REPLICATION_FACTOR)):  # fmt: skip
            if getattr(self, name) > most:
                raise ConfigError(f"{name}={getattr(self, name)}: must be at most {most}")
        if not 0 <= self.producer_linger <= 1:
            raise ConfigError(f"producer_linger={self.producer_linger}: use 0..1 seconds")
        # finite as well: an infinite commit interval never ends a transaction, an infinite
        # session timeout reaches Kafka as a number of milliseconds it cannot take
        durations = ("batch_timeout", "commit_interval", "hole_grace", "stall_grace")
        for name in (*durations, "session_timeout"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfigError(f"{name}={getattr(self, name)}: must be > 0 seconds, and finite")
        if not 0 < self.heartbeat_interval * 3 <= self.session_timeout:
            raise ConfigError(
                f"heartbeat_interval={self.heartbeat_interval} must be > 0 and at most a third "
                f"of session_timeout={self.session_timeout}"
            )
        for name in ("web_host", "metrics_host"):
            if not getattr(self, name).strip():
                # '' would bind every interface: 0.0.0.0 must be asked for by name
                raise ConfigError(
                    f"{name} is empty: give an address (127.0.0.1, or 0.0.0.0 for all)"
                )
        check_port("web_port", self.web_port)
        check_port("metrics_port", self.metrics_port)
        if self.metrics_port and self.metrics_port == self.web_port:
            raise ConfigError(f"metrics_port and web_port are both {self.web_port}: pick two")

    def with_free_ports(self) -> StreamsConfig:
        """This config with port 0 replaced by a port that is free now.

        Resolved once, before the first start, so that the supervisor's restarts
        serve on the same ports (a scraper keeps finding the worker).
        """
        web = self.web_port or free_port(self.web_host)
        metrics = self.metrics_port
        if metrics == 0:
            metrics = free_port(self.metrics_host, avoid=web)
        return dataclasses.replace(self, web_port=web, metrics_port=metrics)

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly_once"

    @property
    def history_length(self) -> int:
        return self.labels.history_length

    @property
    def app_data_dir(self) -> Path:
        """This app's own directory (tables, the clean-shutdown marker)."""
        return self.data_dir / self.app_id


def free_port(host: str, avoid: int | None = None) -> int:
    """A TCP port the OS calls free on ``host`` (what binding port 0 picks)."""
    while True:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port != avoid:
            return port


def describe(config: StreamsConfig) -> Mapping[str, object]:
    """The settings as a flat mapping, for the start-up log line."""
    flat = {k: v for k, v in dataclasses.asdict(config).items() if k != "labels"}
    flat.update({f"labels.{k}": v for k, v in dataclasses.asdict(config.labels).items()})
    return flat
