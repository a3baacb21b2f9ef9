"""``recoil learn``: the continuous learner (Kafka -> Lightning -> snapshot store)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

from recoil.broker.args import add_kafka_arguments, kafka_settings
from recoil.core.checks import MAX_THREADS, check_port
from recoil.core.dirs import check_directory
from recoil.core.errors import ConfigError
from recoil.core.settings import add_arguments, add_command, from_args, setting


@dataclass(frozen=True)
class LearnOptions:
    """The learner process's settings that are not the learner's (recoil.loop passes them)."""

    # rank r of a node serves at metrics_port + r
    metrics_port: int | None = setting(
        None, "serve Prometheus /metrics on this port (0 = any free port)"
    )
    metrics_host: str = setting("127.0.0.1", "address for /metrics")
    threads: int | None = setting(None, "torch CPU threads")

    def __post_init__(self) -> None:
        check_port("metrics_port", self.metrics_port)
        if not self.metrics_host:
            raise ConfigError("metrics_host must not be empty")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads={self.threads}: must be >= 1")
        if self.threads is not None and self.threads > MAX_THREADS:
            raise ConfigError(f"threads={self.threads}: must be at most {MAX_THREADS}")

    def rank_port(self, local_rank: int) -> int | None:
        """The /metrics port of local rank ``local_rank`` (None: no /metrics; 0: any)."""
        if self.metrics_port is None:
            return None
        if not self.metrics_port:
            return 0
        port = self.metrics_port + local_rank
        if port >= 65536:
            raise ConfigError(
                f"metrics_port={self.metrics_port}: rank {local_rank} would serve on {port}, "
                "past 65535 (rank r serves at --metrics-port + r); pick a lower port"
            )
        return port


def check_accelerator(accelerator: str, devices: int, gpus: int) -> None:
    """ConfigError unless Lightning can place ``devices`` ranks on ``accelerator`` given
    ``gpus`` visible CUDA devices: its MisconfigurationException is a traceback, raised
    when the Trainer is made."""
    if accelerator == "cuda" and not gpus:
        raise ConfigError(
            "--accelerator cuda: this process sees no CUDA device (check the driver and "
            "CUDA_VISIBLE_DEVICES); use --accelerator auto or cpu"
        )
    # auto trains on the GPUs where there are any, and then --devices counts GPUs
    if accelerator in ("cuda", "auto") and gpus and devices > gpus:
        raise ConfigError(
            f"--devices {devices}: this node has {gpus} visible CUDA device(s); give "
            f"--devices {gpus} or fewer, or --accelerator cpu for CPU ranks"
        )


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "learn",
        run,
        help="train continuously on training-examples and publish model snapshots",
        description="Fine-tune the sequence recommender on the training-examples topic as "
        "examples arrive (warm-starting from the checkpoint in --checkpoint-dir), and publish "
        "versioned snapshots (weights + FAISS index) into --store every N steps or T seconds. "
        "Stops cleanly on Ctrl-C / SIGTERM after a final checkpoint and snapshot.",
        deferred=add_settings,
    )
    add_kafka_arguments(parser)


def add_settings(parser: argparse.ArgumentParser) -> None:
    """The learner's, its source's and a new model's settings (their modules import torch),
    and where /metrics is served."""
    from learner.continuous import LearnerConfig
    from learner.continuous_loop import live_model_config
    from learner.kafka_source import SourceConfig
    from learner.model import ModelConfig

    add_arguments(parser, LearnerConfig)
    add_arguments(parser, SourceConfig)
    # a new live model's defaults differ from offline training's (live_model_config)
    add_arguments(parser, ModelConfig, defaults=asdict(live_model_config()))
    add_arguments(parser, LearnOptions)


def configs_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """The validated (LearnerConfig, SourceConfig) of parsed arguments."""
    from learner.continuous import LearnerConfig
    from learner.kafka_source import SourceConfig
    from learner.model import ModelConfig

    config = from_args(
        LearnerConfig,
        args,
        model=from_args(ModelConfig, args),
        checkpoint_dir=args.checkpoint_dir or args.store / "checkpoints",
    )
    source = from_args(SourceConfig, args)
    if config.model_updates_topic == source.topic:
        raise ConfigError(
            f"--model-updates-topic and --topic are both {source.topic!r}: snapshot "
            "announcements would land among the training examples; pick two topics"
        )
    return config, source


def run(args: argparse.Namespace) -> int:
    # kafka-python narrates every connection at INFO; the learner's own lines are enough.
    # faiss announces which CPU build it loaded, also at INFO.
    quiet = max(logging.WARNING, logging.getLogger().getEffectiveLevel())
    for name in ("kafka", "faiss.loader"):
        logging.getLogger(name).setLevel(quiet)

    import torch
    from prometheus_client import CollectorRegistry, start_http_server

    from learner.continuous import run_learner
    from learner.metrics import LearnerMetrics

    settings = kafka_settings(args)
    config, source = configs_from_args(args)
    options = from_args(LearnOptions, args)
    check_accelerator(config.accelerator, config.devices, torch.cuda.device_count())
    # before Kafka: an unusable directory otherwise surfaces after the broker's timeout,
    # or at the first snapshot
    check_directory(config.store, "--store", "the directory snapshots are published to")
    check_directory(config.checkpoint_dir, "--checkpoint-dir", "a checkpoint directory")
    # Lightning's launcher (and torchrun) set LOCAL_RANK in the ranks it starts: each rank
    # on a node serves its own /metrics, rank r at --metrics-port + r.
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    port = options.rank_port(local_rank)
    if options.threads:
        torch.set_num_threads(options.threads)
    registry = CollectorRegistry()
    metrics = LearnerMetrics(registry)
    server = None
    if port is not None:
        try:
            server, _ = start_http_server(port, addr=args.metrics_host, registry=registry)
        except OSError as exc:  # in use, or an address this host does not have
            raise ConfigError(
                f"--metrics-host {args.metrics_host} --metrics-port {port}: cannot serve "
                f"/metrics there: {exc.strerror or exc}"
            ) from None
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
