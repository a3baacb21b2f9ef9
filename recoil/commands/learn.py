"""``recoil learn``: the continuous learner (Kafka -> Lightning -> snapshot store)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from recoil.broker.args import add_kafka_arguments, kafka_settings
from recoil.core.errors import ConfigError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "learn",
        help="train continuously on training-examples and publish model snapshots",
        description="Fine-tune the sequence recommender on the training-examples topic as "
        "examples arrive (warm-starting from the checkpoint in --checkpoint-dir), and publish "
        "versioned snapshots (weights + FAISS index) into --store every N steps or T seconds. "
        "Stops cleanly on Ctrl-C / SIGTERM after a final checkpoint and snapshot.",
    )
    add_kafka_arguments(parser)
    parser.add_argument("--store", type=Path, required=True, help="snapshot store directory")
    parser.add_argument("--topic", default="training-examples", help="training examples topic")
    parser.add_argument("--group", default="recoil-learner", help="Kafka consumer group")
    parser.add_argument(
        "--instance-id",
        default="learner-0",
        help="static group membership id: a restart takes its partitions back "
        "at once ('' = dynamic membership)",
    )
    parser.add_argument("--arm", default="feature_and_labels", help="model arm (learner/arms.py)")
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="checkpoint + lineage directory (default: STORE/checkpoints)",
    )
    parser.add_argument(
        "--snapshot-every-steps",
        type=int,
        default=200,
        help="publish a snapshot after this many optimizer steps",
    )
    parser.add_argument(
        "--snapshot-every-seconds",
        type=float,
        default=30.0,
        help="... or after this many seconds, if anything was trained",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="examples per step")
    parser.add_argument(
        "--batch-timeout",
        type=float,
        default=0.5,
        help="seconds a short batch waits for more examples before training",
    )
    parser.add_argument(
        "--max-example-bytes",
        type=int,
        default=1 << 20,
        help="skip (and count) training-example records larger than this",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument(
        "--stop-when-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long without new examples",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics on this port (0 = any free port)",
    )
    parser.add_argument("--metrics-host", default="127.0.0.1", help="address for /metrics")
    parser.add_argument(
        "--model-updates-topic",
        default="model-updates",
        help="topic announcing snapshots ('' = do not announce)",
    )
    parser.add_argument(
        "--no-lineage-log",
        action="store_true",
        help="do not log trained event ids to CHECKPOINT_DIR/trained.jsonl (~30 bytes/example)",
    )
    parser.add_argument(
        "--keep-snapshots", type=int, default=10, help="versions kept in the store (0 = all)"
    )
    model = parser.add_argument_group("model (a new model only; a checkpoint keeps its own)")
    model.add_argument(
        "--encoder", choices=["gru", "sasrec"], default="gru", help="sequence encoder"
    )
    model.add_argument("--embedding-dim", type=int, default=64, help="D of s and v")
    model.add_argument("--hidden-dim", type=int, default=64, help="GRU / feed-forward width")
    model.add_argument("--max-len", type=int, default=50, help="history items the model reads")
    model.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate")
    model.add_argument(
        "--softmax",
        choices=["full", "sampled"],
        default="full",
        help="full softmax over the corpus, or sampled (large corpora)",
    )
    model.add_argument("--seed", type=int, default=0, help="init, dropout and sampling seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="data-parallel ranks on this node: CPU processes (gloo) or GPUs (NCCL); each "
        "reads its own partitions of --topic (docs/operations.md)",
    )
    parser.add_argument(
        "--accelerator",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where ranks train: auto = CUDA where present (then --devices counts GPUs)",
    )
    parser.add_argument(
        "--num-nodes",
        type=int,
        default=1,
        help="nodes running --devices ranks each (MASTER_ADDR, MASTER_PORT, NODE_RANK)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # kafka-python narrates every connection at INFO; the learner's own lines are enough.
    # faiss announces which CPU build it loaded, also at INFO.
    quiet = max(logging.WARNING, logging.getLogger().getEffectiveLevel())
    for name in ("kafka", "faiss.loader"):
        logging.getLogger(name).setLevel(quiet)

    import torch
    from prometheus_client import CollectorRegistry, start_http_server

    from learner.continuous import LearnerConfig, run_learner
    from learner.kafka_source import SourceConfig
    from learner.metrics import LearnerMetrics
    from learner.model import ModelConfig

    settings = kafka_settings(args)
    try:
        model = ModelConfig(
            encoder=args.encoder, embedding_dim=args.embedding_dim, hidden_dim=args.hidden_dim,
            max_len=args.max_len,
        )  # fmt: skip
        config = LearnerConfig(
            store=args.store,
            checkpoint_dir=args.checkpoint_dir or args.store / "checkpoints",
            arm=args.arm,
            model=model,
            lr=args.lr,
            softmax=args.softmax,
            seed=args.seed,
            snapshot_every_steps=args.snapshot_every_steps,
            snapshot_every_seconds=args.snapshot_every_seconds,
            max_steps=args.max_steps,
            stop_when_idle_s=args.stop_when_idle,
            keep_snapshots=args.keep_snapshots,
            model_updates_topic=args.model_updates_topic or None,
            lineage_log=not args.no_lineage_log,
            devices=args.devices,
            num_nodes=args.num_nodes,
            accelerator=args.accelerator,
        )
        source = SourceConfig(
            topic=args.topic, group=args.group, batch_size=args.batch_size,
            batch_timeout_s=args.batch_timeout, instance_id=args.instance_id or None,
            max_example_bytes=args.max_example_bytes,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = CollectorRegistry()
    metrics = LearnerMetrics(registry)
    server = None
    # Lightning's launcher (and torchrun) set LOCAL_RANK in the ranks it starts: each rank
    # on a node serves its own /metrics, rank r at --metrics-port + r.
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.metrics_port is not None:
        port = args.metrics_port + local_rank if args.metrics_port else 0
        server, _ = start_http_server(port, addr=args.metrics_host, registry=registry)
        label = f" (rank {local_rank})" if local_rank else ""
        url = f"http://{args.metrics_host}:{server.server_port}/metrics"
        print(f"metrics{label}: {url}", flush=True)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()  # the learner finishes its step, checkpoints, publishes and returns

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        result = run_learner(settings, config, source, metrics, stop)
    finally:
        if server is not None:
            server.shutdown()
    last = result.snapshots[-1].version if result.snapshots else None
    rank = f"rank {result.rank} " if result.rank else ""
    print(
        f"learner {rank}stopped at step {result.steps}: {result.examples} examples this run, "
        f"{len(result.snapshots)} snapshots (last version {last}), offsets {result.offsets}; "
        f"{result.skipped} records skipped, {result.snapshot_failures} failed publishes",
        flush=True,
    )
    return 0
