"""``recoil demo``: the whole loop on one machine, with a live responsiveness table.

With no arguments it starts the embedded Apache Kafka broker, a stream worker,
one learner and one serving process per arm, and the simulated users, then
prints a table of responsiveness and dislike rate per arm and model version as
the learners publish snapshots. Ctrl-C (or ``--duration``) stops every process
it started and writes the table and a plot to ``--workdir``.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from recoil.commands._kafka_args import add_optional_kafka_arguments, given_or_embedded_kafka
from recoil.kafka_settings import ConfigError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run the whole loop (broker, worker, learners, serving, simulated users)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_optional_kafka_arguments(parser, default=os.environ.get("RECOIL_BOOTSTRAP_SERVERS"))
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new directory")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until Ctrl-C")
    parser.add_argument("--arms", default="feature_and_labels,no_signal")
    parser.add_argument("--world", default="tiny")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rate", type=float, default=150.0, help="impressions per second")
    parser.add_argument("--snapshot-every-seconds", type=float, default=20.0)
    parser.set_defaults(handler=run)


def format_table(results: list[dict[str, Any]]) -> str:
    """Markdown table of probe results: one row per (arm, model version)."""
    header = (
        "| arm | version | responsiveness cluster [95% CI] | responsiveness creator [95% CI] "
        "| dislike rate | repeat dislike rate | impressions |\n|---|---:|---|---|---:|---:|---:|\n"
    )

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:+.1f}%"

    def rate(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.2f}%"

    rows = []
    for r in sorted(results, key=lambda r: (r["arm"], r["model_version"])):
        lo_k, hi_k = r["ci95_cluster"]
        lo_c, hi_c = r["ci95_creator"]
        rows.append(
            f"| {r['arm']} | {r['model_version']} "
            f"| {pct(r['cluster'])} [{pct(lo_k)}, {pct(hi_k)}] "
            f"| {pct(r['creator'])} [{pct(lo_c)}, {pct(hi_c)}] "
            f"| {rate(r['dislike_rate'])} | {rate(r['repeat_dislike_creator_rate'])} "
            f"| {r['impressions']} |"
        )
    return header + "\n".join(rows) + "\n"


def plot_results(results: list[dict[str, Any]], path: Path) -> None:
    """Responsiveness per model version, one line per arm and similarity, with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, similarity in zip(axes, ("cluster", "creator"), strict=True):
        for arm in sorted({r["arm"] for r in results}):
            rows = sorted((r for r in results if r["arm"] == arm), key=lambda r: r["model_version"])
            xs = [r["model_version"] for r in rows]
            ys = [100 * r[similarity] for r in rows]
            lo = [100 * r[f"ci95_{similarity}"][0] for r in rows]
            hi = [100 * r[f"ci95_{similarity}"][1] for r in rows]
            ax.plot(xs, ys, marker="o", label=arm)
            ax.fill_between(xs, lo, hi, alpha=0.2)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(f"responsiveness by {similarity}")
        ax.set_xlabel("model version")
    axes[0].set_ylabel("change of similar recommendations after a dislike (%)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from recoil.loop import Loop, LoopConfig, read_probe_results
    from recoil.processes import ProcessGroup

    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    from learner.arms import ARMS

    unknown = [a for a in arms if a not in ARMS]
    if not arms or unknown:
        raise ConfigError(f"--arms {args.arms!r}: choose from {sorted(ARMS)}")
    workdir = args.workdir or Path.home() / ".cache" / "recoil" / "demo" / time.strftime(
        "%Y%m%d-%H%M%S"
    )
    config = LoopConfig(
        workdir=workdir, arms=arms, world=args.world, users=args.users, rate=args.rate,
        snapshot_every_seconds=args.snapshot_every_seconds,
    )  # fmt: skip

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    started = time.monotonic()
    shown = 0
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
            print("learning ... (Ctrl-C to stop)", flush=True)
            while not args.duration or time.monotonic() - started < args.duration:
                time.sleep(5)
                group.check()
                results = loop.probe_results()
                elapsed = time.monotonic() - started
                steps = {
                    arm: loop.learner_metric(arm, "recoil_learner_steps_total") for arm in arms
                }
                status = ", ".join(f"{a}: {int(s or 0)} steps" for a, s in steps.items())
                print(f"[{elapsed:5.0f}s] {status}; {len(results)} snapshot probes", flush=True)
                if len(results) > shown:
                    shown = len(results)
                    print(format_table(results), flush=True)
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
    results = read_probe_results(config.results_file)
    if results:
        (workdir / "responsiveness.md").write_text(format_table(results))
        plot_results(results, workdir / "responsiveness.png")
        print(format_table(results))
        print(f"wrote {workdir / 'responsiveness.md'} and {workdir / 'responsiveness.png'}")
    return 0
