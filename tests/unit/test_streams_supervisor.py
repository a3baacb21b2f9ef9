"""The supervisor's worker command reproduces a configuration exactly; restarts are bounded."""

from __future__ import annotations

import sys
from pathlib import Path

from recoil.cli import build_parser
from recoil.commands.worker import config_from_args
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.labels import LabelConfig
from streams.config import StreamsConfig
from streams.supervisor import EXIT_UNCOMMITTABLE, RESTARTS_ENV, supervise, worker_command


def test_worker_command_round_trips_every_setting(tmp_path: Path) -> None:
    config = StreamsConfig(
        app_id="a", input_topic="i", output_topic="o", dlq_topic="d", store="memory",
        data_dir=tmp_path, labels=LabelConfig(history_length=7, skip_weight=0.5,
                                              dismiss_is_dislike=False),
        dedupe_window=9, state_cache_users=11, processing_guarantee="at_least_once",
        partitions=3, replication_factor=2, web_host="0.0.0.0", web_port=1234,
        metrics_port=4321, metrics_host="0.0.0.0", batch_size=13, batch_timeout=0.2,
        producer_linger=0.01, commit_interval=0.7, session_timeout=12.0,
        heartbeat_interval=2.0, offset_guard=False, hole_grace=3.0,
    )  # fmt: skip
    argv = worker_command(KafkaSettings("h:1"), config, supervised=False, log_level="DEBUG")
    assert argv[:3] == [sys.executable, "-m", "recoil"]
    args = build_parser().parse_args(argv[3:])
    assert (args.log_level, args.supervise, args.bootstrap_servers) == ("DEBUG", False, "h:1")
    assert config_from_args(args) == config


def test_supervisor_restarts_only_deliberate_crashes(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    # Exits "restart me" twice, then 0.
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = len(p.read_text()) "
        "if p.exists() else 0; p.write_text('x' * (n + 1)); "
        f"sys.exit({EXIT_UNCOMMITTABLE} if n < 2 else 0)"
    )
    assert supervise([sys.executable, "-c", script, str(counter)]) == 0
    assert counter.read_text() == "xxx"


def test_supervisor_gives_up_and_passes_a_config_error_through(tmp_path: Path) -> None:
    always = [sys.executable, "-c", f"import sys; sys.exit({EXIT_UNCOMMITTABLE})"]
    assert supervise(always, max_restarts=2, window=60.0) == EXIT_UNCOMMITTABLE
    counter = tmp_path / "runs"
    config_error = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x'); sys.exit(2)"
    )
    assert supervise([sys.executable, "-c", config_error, str(counter)]) == 2
    assert counter.read_text() == "x"  # not restarted


def test_the_child_learns_how_often_it_was_restarted(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    script = (
        "import os, pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        f"n = os.environ['{RESTARTS_ENV}']; "
        "p.write_text((p.read_text() if p.exists() else '') + n); "
        f"sys.exit({EXIT_UNCOMMITTABLE} if n != '2' else 0)"
    )
    assert supervise([sys.executable, "-c", script, str(seen)]) == 0
    assert seen.read_text() == "012"
