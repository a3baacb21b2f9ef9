"""``recoil backtest``: the ablation's arms on a logged dataset, split by time per user."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recoil.commands._ablation_args import (
    add_arm_arguments,
    add_weight_average_argument,
    check_seed,
    parse_arms,
    parse_labels,
    parse_model,
    positive_int,
    weight_average,
)
from recoil.commands._log_args import add_map_argument
from recoil.core.checks import MAX_SEED
from recoil.core.settings import add_command

MAX_SEEDS = 100  # trainings per arm; more is no backtest anyone waits for


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "backtest",
        run,
        help="train every arm on a logged dataset's past and test on each user's last events",
        description="Read a JSONL event log or a CSV/TSV file (KuaiRand's header is recognised; "
        "other files, JSON Lines review dumps and files without a header line need --map), "
        "hold out each user's last events, train each arm on the "
        "rest and report HR@10/NDCG@10 of held-out positives and HR@10 and HR@100 of held-out "
        "dislikes in DIR/backtest.json, DIR/backtest.md and DIR/backtest.png.",
    )
    parser.add_argument(
        "file", type=Path, help="event log: .jsonl, .csv, .tsv, .dat or any other text name"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    add_map_argument(parser)
    parser.add_argument("--holdout", type=positive_int, default=10, help="test events per user")
    parser.add_argument(
        "--max-users", type=positive_int, default=None, help="use the first N users"
    )
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=None,
        help="most training steps per arm (default 3000; fewer when validation stops early)",
    )
    parser.add_argument(
        "--validation",
        type=int,
        default=None,
        metavar="N",
        help="each user's newest N training examples decide when to stop (default 3); "
        "0 trains for exactly --max-steps",
    )
    add_weight_average_argument(
        parser, "default 0.99; 0 is how backtests before 2026-12-02 trained"
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        metavar="N",
        help="train each arm with seeds SEED..SEED+N-1 and report their mean per test case, "
        "with each seed's figures and the spread (default 1; one run's HR can move by 10%% "
        "with the seed alone)",
    )
    parser.add_argument(
        "--no-stage",
        action="store_true",
        help="train feature_and_labels and feature_labels_skips from scratch; by default "
        "each trains as a stage on exclude_heuristic's weights of the same seed, only its "
        "dislike parameters learning (docs/experiment.md)",
    )
    add_arm_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from recoil.core.errors import ConfigError
    from simulator.backtest import BacktestConfig, TooFewEventsError, run_backtest

    arms = parse_arms(args.arms)
    defaults = BacktestConfig()  # the flags change the backtest's own model and labels
    model = parse_model(args.model, defaults.model)
    labels = parse_labels(args.label, defaults.labels)
    if args.validation is not None and args.validation < 0:
        raise ConfigError(f"--validation must be >= 0, got {args.validation}")
    decay = weight_average(args)
    check_seed(args.seed)
    if args.seeds > MAX_SEEDS:
        raise ConfigError(f"--seeds must be at most {MAX_SEEDS}, got {args.seeds}")
    if args.seed + args.seeds - 1 > MAX_SEED:
        raise ConfigError(
            f"--seed {args.seed} with --seeds {args.seeds} runs past the largest seed "
            f"{MAX_SEED}; give a lower --seed"
        )
    from simulator.logs import log_file_problem, parse_mapping, read_event_log

    problem = log_file_problem(args.file)
    if problem:
        raise ConfigError(f"{problem}: {args.file}")
    from simulator.parallel import default_workers

    try:
        mapping = None if args.map is None else parse_mapping(args.map)
    except ValueError as exc:
        raise ConfigError(f"--map {args.map!r}: {exc}") from None
    try:
        events = list(read_event_log(args.file, mapping))
    except ValueError as exc:  # a bad row: the reader names file and line
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"{args.file}: cannot read: {exc.strerror or exc}") from None
    try:
        config = BacktestConfig(
            holdout_events=args.holdout,
            arms=arms,
            max_users=args.max_users,
            model=model,
            labels=labels,
            seeds=args.seeds,
            stage_on_heuristic=not args.no_stage,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    train = replace(config.train, seed=args.seed)
    if args.max_steps is not None:
        # at least ~10 validation checks however short the run
        every = min(train.validation_every, max(1, args.max_steps // 10))
        train = replace(train, max_steps=args.max_steps, validation_every=every)
    if args.validation is not None:
        train = replace(train, validation_examples=args.validation)
    if decay is not None:
        train = replace(train, weight_average_decay=decay)
    config = replace(config, train=train)
    workers = args.workers or default_workers(len(arms) * args.seeds)
    progress = not args.no_progress
    try:
        run_backtest(events, config, args.out, str(args.file), progress=progress, workers=workers)
    except TooFewEventsError as exc:  # raised before any training
        raise ConfigError(str(exc)) from None
    print((args.out / "backtest.md").read_text(), end="")
    return 0
