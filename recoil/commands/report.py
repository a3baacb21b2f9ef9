"""``recoil report``: render the Grafana dashboards' panels as PNGs from Prometheus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from recoil.core.settings import add_command


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "report",
        run,
        help="plot the responsiveness, pipeline-health and learner panels as PNG files",
        description="Query Prometheus' query_range API with the dashboards' PromQL "
        "(monitoring/dashboards.py) and write one PNG per dashboard into --out.",
    )
    parser.add_argument(
        "--prometheus", required=True, help="Prometheus base URL, e.g. http://127.0.0.1:9090"
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the PNG files")
    parser.add_argument("--range", default="1h", help="how far back to plot (default 1h)")
    parser.add_argument("--step", default="15s", help="resolution (default 15s)")
    parser.add_argument(
        "--dashboard",
        action="append",
        help="only this dashboard uid (repeatable): recoil-overview, recoil-responsiveness, "
        "recoil-pipeline, recoil-learner; default all",
    )


def run(args: argparse.Namespace) -> int:
    from monitoring.dashboards import DASHBOARDS
    from monitoring.report import PrometheusClient, ReportError, parse_duration, write_report

    try:
        client = PrometheusClient(args.prometheus)  # checks the URL before anything else
        range_seconds, step_seconds = parse_duration(args.range), parse_duration(args.step)
    except (ReportError, ValueError) as exc:
        print(f"recoil report: {exc}", file=sys.stderr)
        return 2
    boards = DASHBOARDS
    if args.dashboard:
        known = {d.uid: d for d in DASHBOARDS}
        unknown = [uid for uid in args.dashboard if uid not in known]
        if unknown:
            print(
                f"recoil report: unknown dashboard {', '.join(unknown)}; choose from "
                f"{', '.join(known)}",
                file=sys.stderr,
            )
            return 2
        boards = tuple(known[uid] for uid in args.dashboard)
    try:
        written = write_report(client, args.out, range_seconds, step_seconds, boards)
    except ReportError as exc:
        print(f"recoil report: {exc}", file=sys.stderr)
        return 2
    for path, panels in written.items():
        empty = sum(p.empty for p in panels)
        print(f"{path}  ({len(panels)} panels, {empty} without data)")
    return 0
