"""``recoil demo``: the whole loop on one machine, with a live responsiveness table.

With no arguments it starts the embedded Apache Kafka broker, a stream worker,
one learner and one serving process per arm, and the simulated users, split
between the arms as in an A/B test (a stable hash of the user id picks the arm;
--split sets the shares; the last arm is the baseline). It prints one line per
probed model version (responsiveness with its interval, and its distance from
the arm's earlier versions) and, every 30 s, the arms' live dislike rates and
their A/B change. Ctrl-C (or --duration) stops every process it started, prints
the summary per arm (responsiveness over versions, dislike, repeat-dislike and
engagement rates, A/B changes, all with 95% intervals) and writes it, the
per-version table and a plot to --workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from recoil.broker.args import add_optional_kafka_arguments, given_or_embedded_kafka
from recoil.core.checks import check_finite
from recoil.core.dirs import check_directory
from recoil.core.errors import ConfigError
from recoil.core.settings import add_arguments, add_command, from_args, setting

if TYPE_CHECKING:
    from recoil.commands._demo_prometheus import DemoPrometheus
    from recoil.loop import Loop

POLL_SECONDS = 15.0  # Prometheus' committed evaluation interval


@dataclass(frozen=True)
class DemoOptions:
    """How long the demo runs and what it watches: the demo's own, not the loop's."""

    duration: float = setting(0.0, "seconds; 0 = until Ctrl-C")
    warmup: float = setting(
        0.0,
        "run the loop this long before the measured run: --duration, --switch's SECONDS, the "
        "printed times and --prometheus start after it (a young learner's responsiveness still "
        "moves a lot; docs/live_experiment.md)",
        metavar="SECONDS",
    )
    prometheus: bool = setting(
        False,
        "also run Prometheus with monitoring/'s rules against the loop and print each alert's "
        "changes (pending, firing, resolved); polls go to WORKDIR/prometheus.jsonl",
    )

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ConfigError(f"warmup={self.warmup}: seconds, not negative")
        # NaN passed both tests before: a NaN --duration ended the run at its first check
        # (nothing is < NaN), a negative one too; a NaN --warmup shifted every time by NaN
        check_finite(
            "duration", self.duration, ">= 0", "a finite number of seconds", "(0 = until Ctrl-C)"
        )
        check_finite("warmup", self.warmup, ">= 0", "a finite number of seconds")


def register(sub: Any) -> None:
    help = "run the whole loop (broker, worker, learners, serving, simulated users)"
    parser = add_command(sub, "demo", run, help, __doc__ or "", raw=True, deferred=add_settings)
    add_optional_kafka_arguments(parser, default=os.environ.get("RECOIL_BOOTSTRAP_SERVERS"))


def add_settings(parser: argparse.ArgumentParser) -> None:
    """The loop's settings (recoil.loop: read when the command is used), and the demo's own."""
    from recoil.loop import LoopConfig

    add_arguments(parser, LoopConfig)
    add_arguments(parser, DemoOptions)


def run(args: argparse.Namespace) -> int:
    from recoil.commands import _demo_view as demo_view
    from recoil.commands._demo_prometheus import DemoPrometheus
    from recoil.core.processes import ProcessGroup
    from recoil.loop import Loop, LoopConfig, read_ab_summary, read_probe_results

    from_args(DemoOptions, args)  # checks them
    workdir = args.workdir or Path.home() / ".cache" / "recoil" / "demo" / time.strftime(
        "%Y%m%d-%H%M%S"
    )
    check_directory(workdir, "--workdir", "a directory for the demo's logs and results")
    switch = shifted_switch(args.switch, args.warmup)
    config = from_args(LoopConfig, args, workdir=workdir, switch=switch)
    arms = config.arms

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    started = time.monotonic() + args.warmup  # the measured run's start
    measured_from = time.time() + args.warmup
    shown = 0
    last_ab = last_poll = -args.warmup - POLL_SECONDS
    prometheus: DemoPrometheus | None = None
    # The roles stop (ProcessGroup's exit) before the broker they talk to.
    with (
        given_or_embedded_kafka(args, workdir / "kafka") as kafka,
        ProcessGroup(workdir / "logs") as group,
    ):
        try:
            print(f"kafka at {kafka.bootstrap_servers}; logs in {workdir / 'logs'}", flush=True)
            loop = Loop(config, kafka, group)
            loop.start()
            for arm in arms:
                print(f"serving {arm} at {loop.serving_url(arm)}", flush=True)
            if args.warmup:
                print(f"warming up for {args.warmup:.0f}s (times count from its end)", flush=True)
                (workdir / "warmup.json").write_text(
                    json.dumps({"warmup_seconds": args.warmup, "measured_from": measured_from})
                )
            print("learning ... (Ctrl-C to stop)", flush=True)
            while not args.duration or time.monotonic() - started < args.duration:
                time.sleep(2)
                group.check()
                elapsed = time.monotonic() - started
                if args.prometheus and prometheus is None and elapsed >= 0:
                    prometheus = DemoPrometheus(workdir / "prometheus", _targets(loop))
                    prometheus.start(group)
                    print(f"prometheus at {prometheus.url} (alerts: /api/v1/alerts)", flush=True)
                if prometheus is not None and elapsed - last_poll >= POLL_SECONDS:
                    last_poll = elapsed
                    try:
                        lines = prometheus.poll(elapsed, workdir / "prometheus.jsonl")
                    except (OSError, RuntimeError) as exc:  # a busy server: the next poll
                        lines = [f"[{elapsed:5.0f}s] prometheus poll failed: {exc}"]
                    for line in lines:
                        print(line, flush=True)
                results = loop.probe_results()
                for i in range(shown, len(results)):
                    earlier = [r for r in results[:i] if r["arm"] == results[i]["arm"]]
                    print(demo_view.version_line(results[i], earlier, elapsed), flush=True)
                shown = len(results)
                summary = read_ab_summary(config.ab_file)
                if summary and elapsed - last_ab >= 30:
                    last_ab = elapsed
                    print(demo_view.ab_line(summary, elapsed), flush=True)
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
    results = read_probe_results(config.results_file)
    summary = read_ab_summary(config.ab_file)
    if results or summary:
        # Responsiveness over the measured run's versions; the rates count every impression.
        measured = [r for r in results if float(r["probed_at"]) >= measured_from]
        text = demo_view.summary_text(measured, summary, baseline=arms[-1])
        (workdir / "responsiveness.md").write_text(
            text + "\nPer model version:\n\n" + demo_view.format_table(results)
        )
        demo_view.plot(results, summary, workdir / "responsiveness.png")
        print("\n" + text)
        print(f"wrote {workdir / 'responsiveness.md'} and {workdir / 'responsiveness.png'}")
    if prometheus is not None:
        alerts = prometheus.summary()
        (workdir / "alerts.txt").write_text(alerts + "\n")
        print("\n" + alerts)
    return 0


def shifted_switch(spec: str, warmup: float) -> str:
    """``--switch ARM=OTHER@SECONDS`` as the simulator counts: from its start, warm-up included."""
    from recoil.commands.simulate import parse_switch

    parsed = parse_switch(spec)
    if parsed is None:
        return ""
    arm, other, after = parsed
    return f"{arm}={other}@{after + warmup:g}"


def _targets(loop: Loop) -> dict[str, list[str]]:
    """The loop's /metrics endpoints by monitoring/prometheus.yml's scrape job."""
    from monitoring.catalogue import Part
    from monitoring.scrape import JOBS

    ports = loop.ports
    return {
        JOBS[Part.STREAMS]: [f"127.0.0.1:{ports.worker_metrics}"],
        JOBS[Part.LEARNER]: [f"127.0.0.1:{p}" for p in ports.learner_metrics.values()],
        JOBS[Part.SERVING]: [f"127.0.0.1:{p}" for p in ports.serving.values()],
        JOBS[Part.SIMULATOR]: [f"127.0.0.1:{ports.simulator_metrics}"],
    }
