"""``recoil bench pipeline``: the whole data path, events -> worker(s) -> learner.

One run, real processes on one broker:

1. ``--workers`` ``recoil worker`` subprocesses (one consumer group) and one
   ``recoil learn`` subprocess start and join their groups;
2. N events (a synthetic world's logged impressions, or a file read as ``recoil
   replay`` reads it, in time order) are sent as fast as the broker takes them
   into the interactions topic;
3. every ~1 s the benchmark samples each group's committed offsets against the
   topic's end offsets (the workers on interactions, the learner on
   training-examples: that is the consumer lag) and the processes' own counters;
4. it waits until both lags are 0 and every event and example is accounted for.

It reports the workers' sustained events/s and the learner's examples/s (each from
its own counters, first item to last, so start-up is excluded), the maximum lag of
each group, the time to drain (from the last event sent to both lags at 0), and the
CPU seconds each role spent from the first event sent to the drain (per event read and
per example trained: on shared cores, the figure that says who keeps up), with what
this process, the broker and idleness took of the machine's cores meanwhile, and writes
``pipeline.json`` and ``pipeline.png`` (lag over time) into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.learner_flags import add_learner_arguments, model_flags, model_overrides
from recoil.broker.args import add_optional_kafka_arguments, given_or_embedded_kafka
from recoil.core.settings import add_command
from streams.config import COMPRESSIONS

HELP = "events/s, examples/s, consumer lag and drain time of worker(s) + learner"
MAX_EVENTS = 100_000_000  # held in memory (~0.4 KiB each) and sorted before they are sent
WORKER_EVENTS = "recoil_stream_events_total"  # every event read, whatever the outcome
WORKER_EXAMPLES = "recoil_stream_training_examples_total"
LEARNER_EXAMPLES = "recoil_learner_examples_total"
CPU_KEYS = (
    "worker_cpu_seconds", "worker_cpu_us_per_event",
    "learner_cpu_seconds", "learner_cpu_us_per_example",
    "harness_cpu_seconds", "other_cpu_seconds", "idle_cpu_seconds", "cores",
)  # fmt: skip


def register(sub: Any) -> None:
    parser = add_command(sub, "pipeline", run, HELP, __doc__ or "", raw=True)
    add_optional_kafka_arguments(parser, default=None)
    parser.add_argument("--events", type=int, default=200_000, help="events to replay")
    parser.add_argument("--workers", type=int, default=1, help="recoil worker processes")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of both topics")
    parser.add_argument(
        "--world", default="medium", help="simulator world whose users make the events"
    )
    parser.add_argument(
        "--file", type=Path, default=None, help="replay this event log instead (as recoil replay)"
    )
    parser.add_argument("--map", default=None, help="column mapping of --file (as recoil replay)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="learner examples per step (its default)"
    )
    parser.add_argument("--threads", type=int, default=1, help="learner torch CPU threads")
    parser.add_argument(
        "--producer-compression", choices=COMPRESSIONS, default="none",
        help="the workers' codec for what they write (recoil worker's flag)",
    )  # fmt: skip
    add_learner_arguments(parser)
    parser.add_argument(
        "--out", type=Path, default=Path("bench-out"), help="directory for pipeline.json/.png"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after seconds")


def run(args: argparse.Namespace) -> int:
    check_args(args)
    # kafka-python narrates admin decoding, faiss its CPU build: the figures are enough.
    for name, level in (("kafka", logging.ERROR), ("faiss.loader", logging.WARNING)):
        logging.getLogger(name).setLevel(level)
    events = load_events(args)
    with given_or_embedded_kafka(args) as settings:
        return _bench(args, settings, events)


def check_args(args: argparse.Namespace) -> None:
    """Every flag checked before the broker starts and the world is simulated (minutes
    in): a bad one otherwise ends the run in a traceback, or hangs it (a NaN timeout)."""
    from recoil.core.checks import MAX_THREADS
    from recoil.core.errors import ConfigError
    from recoil.core.topics import MAX_PARTITIONS
    from simulator.logs import log_file_problem
    from simulator.world import WORLD_PRESETS

    counts = {"--events": args.events, "--workers": args.workers,
              "--partitions": args.partitions, "--threads": args.threads}  # fmt: skip
    bad = [f"{flag} {value}" for flag, value in counts.items() if value < 1]
    if bad:
        raise ConfigError(f"{', '.join(bad)}: must be >= 1")
    if args.events > MAX_EVENTS or args.partitions > MAX_PARTITIONS or args.threads > MAX_THREADS:
        raise ConfigError(
            f"--events must be at most {MAX_EVENTS} (all are held in memory), --partitions at "
            f"most {MAX_PARTITIONS} and --threads at most {MAX_THREADS}, got {args.events}, "
            f"{args.partitions}, {args.threads}"
        )
    check_learner_flags(args)
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConfigError(f"--timeout {args.timeout}: must be a finite number of seconds > 0")
    if args.file is None and args.world not in WORLD_PRESETS:
        raise ConfigError(f"--world {args.world!r}: choose one of {sorted(WORLD_PRESETS)}")
    problem = None if args.file is None else log_file_problem(args.file)
    if problem:
        raise ConfigError(f"--file {args.file}: {problem}")
    if args.map is not None and args.file is None:
        raise ConfigError("--map maps the columns of --file: give --file too")


def check_learner_flags(args: argparse.Namespace) -> None:
    """The learner's settings this benchmark passes on, as the learner checks them: it
    would refuse them only once the broker is up and the events are sent."""
    from learner.kafka_source import SourceConfig
    from learner.model import ModelConfig
    from recoil.core.errors import ConfigError

    overrides = model_overrides(args)
    try:
        ModelConfig(**overrides)
    except ValueError as exc:
        raise ConfigError(f"{' '.join(model_flags(overrides))}: {exc}") from None
    if args.batch_size is not None:
        try:
            SourceConfig(batch_size=args.batch_size)
        except ValueError as exc:
            raise ConfigError(f"--batch-size {args.batch_size}: {exc}") from None


def load_average() -> float:
    """The 1-minute load average: on a shared machine the figures move with it."""
    import os

    return os.getloadavg()[0]


def load_events(args: argparse.Namespace) -> list[Any]:
    """The events to replay, in time order (a user's events stay in their order); a file
    that cannot be read as a log is a ConfigError."""
    from recoil.core.errors import ConfigError
    from streams.replay import MAX_SORT_EVENTS, time_ordered

    if args.file is not None:
        from simulator.logs import parse_mapping, read_event_log

        try:
            mapping = parse_mapping(args.map) if args.map else None
        except ValueError as exc:
            raise ConfigError(f"--map {args.map!r}: {exc}") from None
        events: Iterable[Any] = read_event_log(args.file, mapping)
    else:
        events = world_events(args.world, args.events)
    first = itertools.islice(events, args.events)  # as recoil replay's --limit
    try:
        return list(time_ordered(first, max(args.events, MAX_SORT_EVENTS)).events)
    except (ValueError, OSError) as exc:
        if args.file is None:  # the world's own events: no setting to blame
            raise
        if isinstance(exc, OSError):
            raise ConfigError(f"--file {args.file}: cannot read: {exc.strerror or exc}") from None
        raise ConfigError(str(exc)) from None  # a bad row: the reader names file and line


def world_events(world_name: str, count: int) -> list[Any]:
    """At least ``count`` logged impressions of the world's first users (seed 0)."""
    from simulator.logged_data import simulate_logs
    from simulator.policy import LoggingPolicyConfig
    from simulator.world import World, world_preset

    world = World(world_preset(world_name))
    steps = world.config.steps_per_user
    users = min(world.config.num_users, math.ceil(count / steps))
    print(f"simulating {users} users x {steps} impressions of the {world_name} world ...")
    return simulate_logs(world, LoggingPolicyConfig(), users=range(users)).events


def cpu_seconds_by_group() -> dict[int, float] | None:
    """User + system CPU seconds of the live processes, summed by process group, from
    Linux's /proc (None elsewhere). Each role starts in a session of its own, so its
    group holds all of it: a supervised worker is two processes."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        return None
    ticks: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt
            # majflt cmajflt utime stime ... (proc(5)); comm may hold spaces and ")"
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone since the listing
        if fields[0] != "Z":  # a zombie is not live
            group = int(fields[2])
            ticks[group] = ticks.get(group, 0) + int(fields[11]) + int(fields[12])
    per_second = os.sysconf("SC_CLK_TCK")
    return {group: n / per_second for group, n in ticks.items()}


def machine_cpu_seconds() -> tuple[float, float] | None:
    """(busy, idle) CPU seconds of the whole machine since boot, all cores together,
    from Linux's /proc/stat (None elsewhere). Time the hypervisor stole is neither."""
    try:
        line = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return None
    # "cpu  user nice system idle iowait irq softirq steal guest guest_nice" (proc(5));
    # guest time is already counted in user
    user, nice, system, idle, iowait, irq, softirq = (int(f) for f in line.split()[1:8])
    per_second = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / per_second, (idle + iowait) / per_second


def cpu_by_role(group: Any) -> dict[str, float] | None:
    """CPU seconds so far of the workers (summed), the learner, this process (the replay
    and the sampling) and the whole machine (busy and idle); None without /proc."""
    by_group = cpu_seconds_by_group()
    machine = machine_cpu_seconds()
    if by_group is None or machine is None:
        return None
    times = os.times()
    seconds = {"workers": 0.0, "learner": 0.0, "harness": times.user + times.system,
               "machine": machine[0], "idle": machine[1]}  # fmt: skip
    for child in group.children:
        role = "learner" if child.name == "learner" else "workers"
        seconds[role] += by_group.get(child.process.pid, 0.0)
    return seconds


@dataclass
class Sample:
    """One look at the pipeline, ``t`` seconds after the replay began."""

    t: float
    sent: int  # events acknowledged by the broker (replay_events counts at the ack)
    worker_events: int  # events the workers read (their counters, summed)
    worker_examples: int  # examples the workers wrote
    learner_examples: int  # examples the learner consumed
    worker_lag: int | None  # interactions: end - committed, over partitions
    learner_lag: int | None  # training-examples: end - committed


class Watcher:
    """Samples lags and counters every ``interval`` seconds on its own thread."""

    def __init__(
        self, settings: Any, groups: dict[str, tuple[str, str]], urls: dict[str, list[str]]
    ) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        self.admin = KafkaAdminClient(**settings.kafka_python())
        self.consumer = KafkaConsumer(**settings.kafka_python())
        self.groups = groups  # "worker"/"learner" -> (topic, group)
        self.urls = urls  # "worker"/"learner" -> metrics URLs
        self.sent = 0
        self.samples: list[Sample] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline-watcher", daemon=True)

    def lag(self, role: str) -> int | None:
        """Messages of the role's topic its group has not committed; None while the topic
        is empty. The groups read from the beginning, so a partition without a commit
        lags by all it holds: on a loaded machine the first commit can come after the
        whole replay, and counting such partitions as "no lag yet" showed a lag of 0."""
        from kafka import TopicPartition

        topic, group = self.groups[role]
        parts = self.consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = self.consumer.end_offsets(tps)
        if not any(int(end) > 0 for end in ends.values()):
            return None
        committed = self.admin.list_group_offsets({group: tps}).get(group, {})
        done = {tp: m.offset for tp, m in committed.items() if m.offset >= 0}
        # only partitions without a commit need their start (one broker request fewer
        # per sample once every partition has committed)
        uncommitted = [tp for tp in tps if tp not in done]
        starts = self.consumer.beginning_offsets(uncommitted) if uncommitted else {}
        return sum(
            max(0, int(end) - done.get(tp, int(starts.get(tp, 0)))) for tp, end in ends.items()
        )

    def counter(self, role: str, name: str) -> int:
        from streams.harness import scrape

        total = 0.0
        for url in self.urls[role]:
            try:
                samples = scrape(url)
            except OSError:
                continue
            total += sum(v for (n, _), v in samples.items() if n == name)
        return int(total)

    def sample(self) -> Sample:
        sample = Sample(
            t=time.monotonic() - self.started,
            sent=self.sent,
            worker_events=self.counter("worker", WORKER_EVENTS),
            worker_examples=self.counter("worker", WORKER_EXAMPLES),
            learner_examples=self.counter("learner", LEARNER_EXAMPLES),
            worker_lag=self.lag("worker"),
            learner_lag=self.lag("learner"),
        )
        self.samples.append(sample)
        return sample

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        last_print = 0.0
        while not self._stop.wait(max(0.0, 1.0 - (time.monotonic() - self.started) % 1.0)):
            s = self.sample()
            if s.t - last_print >= 5.0:
                last_print = s.t
                print(
                    f"  {s.t:6.1f}s sent {s.sent:,} | workers {s.worker_events:,} events, "
                    f"{s.worker_examples:,} examples, lag {s.worker_lag} | learner "
                    f"{s.learner_examples:,} examples, lag {s.learner_lag}",
                    flush=True,
                )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.admin.close()
        self.consumer.close()


def _bench(args: argparse.Namespace, settings: Any, events: list[Any]) -> int:
    from recoil.core.processes import ProcessGroup
    from recoil.core.topics import topic_bytes
    from streams.replay import replay_to_kafka

    load_at_start = load_average()
    print(f"load average (1 min) at the start: {load_at_start:.2f}", flush=True)
    tag = f"bench-pipeline-{int(time.time())}"
    work = Path(tempfile.mkdtemp(prefix="recoil-bench-pipeline-"))
    workers, learner, urls = _commands(args, settings, tag, work)
    groups = {"worker": (workers[0][1], tag), "learner": (learner[1], f"{tag}-learner")}
    with ProcessGroup(work / "logs") as group:
        for n, (argv, _) in enumerate(workers):
            group.start(f"worker-{n}", argv, env=settings.env())
        group.start("learner", learner[0], env=settings.env())
        print(f"{args.workers} worker(s) and a learner starting (logs: {work / 'logs'}) ...")
        watcher = Watcher(settings, groups, urls)
        _wait_ready(watcher, group, args.timeout)
        print(f"replaying {len(events):,} events into {groups['worker'][0]} ...", flush=True)
        watcher.start()
        cpu_at_start = cpu_by_role(group)

        def sent(n: int) -> None:
            watcher.sent += n

        try:
            stats = asyncio.run(replay_to_kafka(events, settings, groups["worker"][0], None, sent))
            replayed_at = time.monotonic() - watcher.started
            print(f"  sent at {stats.events_per_second:,.0f} events/s", flush=True)
            last = _wait_drained(watcher, group, len(events), args.timeout)
            cpu_at_end = cpu_by_role(group)
        finally:
            watcher.stop()
        stored = topic_bytes(settings, learner[1])
    result = summarize(watcher.samples, len(events), replayed_at, last)
    result |= cpu_figures(cpu_at_start, cpu_at_end, result)
    result |= {"workers": args.workers, "partitions": args.partitions,
               "source": str(args.file) if args.file else f"world:{args.world}",
               "send_events_per_second": stats.events_per_second,
               "producer_compression": args.producer_compression,
               "examples_topic_bytes": stored,
               "examples_topic_bytes_per_example": stored / max(1, result["worker_examples"]),
               "load_at_start": load_at_start, "load_at_end": load_average()}  # fmt: skip
    _report(result)
    args.out.mkdir(parents=True, exist_ok=True)
    samples = [asdict(s) for s in watcher.samples]
    (args.out / "pipeline.json").write_text(
        json.dumps({**result, "samples": samples}, indent=2) + "\n"
    )
    plot(args.out / "pipeline.png", watcher.samples, result)
    print(f"wrote {args.out / 'pipeline.json'} and {args.out / 'pipeline.png'}")
    return 0


def _commands(
    args: argparse.Namespace, settings: Any, tag: str, work: Path
) -> tuple[list[tuple[list[str], str]], tuple[list[str], str], dict[str, list[str]]]:
    """(worker argv, input topic) per worker, (learner argv, examples topic), metrics URLs."""
    from learner.continuous import LearnerConfig, SourceConfig
    from recoil.broker.embedded import free_port
    from recoil.core.processes import recoil_command
    from recoil.core.settings import to_flags
    from recoil.core.topics import ensure_topics
    from streams.config import StreamsConfig
    from streams.harness import worker_argv

    base = StreamsConfig(
        app_id=tag,
        input_topic=f"{tag}.interactions",
        output_topic=f"{tag}.examples",
        dlq_topic=f"{tag}.dlq",
        partitions=args.partitions,
        producer_compression=args.producer_compression,
    )
    ensure_topics(settings, [base.input_topic, base.output_topic], partitions=args.partitions)
    ensure_topics(settings, [base.dlq_topic], partitions=1)
    workers: list[tuple[list[str], str]] = []
    urls: dict[str, list[str]] = {"worker": [], "learner": []}
    for n in range(args.workers):
        port = free_port()
        config = replace(
            base, data_dir=work / f"worker-{n}", web_port=free_port(), metrics_port=port
        )
        workers.append((worker_argv(settings, config), base.input_topic))
        urls["worker"].append(f"http://127.0.0.1:{port}/metrics")
    learner = LearnerConfig(
        store=work / "store",
        checkpoint_dir=work / "checkpoints",
        model_updates_topic=None,
        precision=args.precision,
        softmax=args.softmax,
    )
    source = SourceConfig(topic=base.output_topic, group=f"{tag}-learner")
    if args.batch_size is not None:
        source = replace(source, batch_size=args.batch_size)
    port = free_port()
    urls["learner"].append(f"http://127.0.0.1:{port}/metrics")
    argv = recoil_command(
        "learn", "--bootstrap-servers", settings.bootstrap_servers, *to_flags(learner),
        *to_flags(source), f"--metrics-port={port}", f"--threads={args.threads}",
        *model_flags(model_overrides(args)),
    )  # fmt: skip
    return workers, (argv, base.output_topic), urls


def _wait_ready(watcher: Watcher, group: Any, timeout: float) -> None:
    """Until every process serves /metrics and both consumer groups are stable."""
    deadline = time.monotonic() + timeout
    while True:
        group.check()
        if _serving(watcher) and all(_stable(watcher, g) for _, g in watcher.groups.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workers and the learner were not ready in {timeout}s")
        time.sleep(0.5)


def _serving(watcher: Watcher) -> bool:
    import urllib.request

    for url in (u for urls in watcher.urls.values() for u in urls):
        try:
            with urllib.request.urlopen(url, timeout=2):
                pass
        except OSError:
            return False
    return True


def _stable(watcher: Watcher, group_id: str) -> bool:
    try:
        info = watcher.admin.describe_groups([group_id]).get(group_id, {})
    except Exception:  # not known yet: kafka-python raises several kinds here
        return False
    return bool(info.get("group_state") == "Stable" and info.get("members"))


def _wait_drained(watcher: Watcher, group: Any, events: int, timeout: float) -> Sample:
    """The first sample with every event read and both lags at 0."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        group.check()
        time.sleep(0.5)
        if watcher.samples and drained(watcher.samples[-1], events):
            return watcher.samples[-1]
    last = watcher.samples[-1] if watcher.samples else None
    raise TimeoutError(f"not drained after {timeout}s: {last}")


def drained(s: Sample, events: int) -> bool:
    """Every event read, every example written consumed, and nothing left in either topic."""
    return (
        s.worker_events >= events
        and s.worker_lag == 0
        and s.learner_lag == 0
        and s.learner_examples >= s.worker_examples
    )


def rate(points: list[tuple[float, int]]) -> float:
    """Items/s from the first sample with an item to the first with the final count."""
    started = [(t, n) for t, n in points if n > 0]
    if not started:
        return 0.0
    final = started[-1][1]
    t1 = next(t for t, n in started if n >= final)
    t0, n0 = started[0]
    if t1 <= t0:  # everything happened within one sample
        return float("inf")
    return (final - n0) / (t1 - t0)


def summarize(
    samples: list[Sample], events: int, replayed_at: float, last: Sample
) -> dict[str, Any]:
    """The figures of a run, from its samples."""
    worker_lags = [s.worker_lag for s in samples if s.worker_lag is not None]
    learner_lags = [s.learner_lag for s in samples if s.learner_lag is not None]
    worker_rate = rate([(s.t, s.worker_events) for s in samples])
    learner_rate = rate([(s.t, s.learner_examples) for s in samples])
    examples_per_event = last.worker_examples / max(1, last.worker_events)
    # when the workers had read and committed every event: what the learner trails by
    workers_done = next(
        (s.t for s in samples if s.worker_events >= events and s.worker_lag == 0), last.t
    )
    return {
        "events": events,
        "worker_events": last.worker_events,
        "worker_examples": last.worker_examples,
        "learner_examples": last.learner_examples,
        "worker_events_per_second": worker_rate,
        "worker_examples_per_second": worker_rate * examples_per_event,
        "learner_examples_per_second": learner_rate,
        "max_worker_lag": max(worker_lags, default=0),
        "max_learner_lag": max(learner_lags, default=0),
        "replay_seconds": replayed_at,
        "drain_seconds": max(0.0, last.t - replayed_at),
        "workers_done_seconds": workers_done,
        "learner_after_workers_seconds": max(0.0, last.t - workers_done),
        "drained": drained(last, events),
    }


def cpu_figures(
    start: dict[str, float] | None, end: dict[str, float] | None, result: dict[str, Any]
) -> dict[str, Any]:
    """CPU seconds per role over the run, per event read (workers) and per example
    trained (learner), and how the machine's cores were spent besides: this process
    (the replay, the sampling), everything else busy (the broker, other work) and idle;
    None where /proc could not tell."""
    if start is None or end is None:
        return dict.fromkeys(CPU_KEYS)
    spent = {role: end[role] - start[role] for role in end}
    worker, learner, harness = spent["workers"], spent["learner"], spent["harness"]
    return {
        "worker_cpu_seconds": worker,
        "worker_cpu_us_per_event": 1e6 * worker / max(1, result["worker_events"]),
        "learner_cpu_seconds": learner,
        "learner_cpu_us_per_example": 1e6 * learner / max(1, result["learner_examples"]),
        "harness_cpu_seconds": harness,
        # the machine's busy time that none of the three spent; clock ticks are read at
        # slightly different moments, so a small negative remainder reads as 0
        "other_cpu_seconds": max(0.0, spent["machine"] - worker - learner - harness),
        "idle_cpu_seconds": spent["idle"],
        "cores": os.cpu_count(),
    }


def _report(r: dict[str, Any]) -> None:
    print(
        f"workers: {r['worker_events_per_second']:,.0f} events/s "
        f"({r['worker_examples_per_second']:,.0f} examples/s), max lag {r['max_worker_lag']:,}"
    )
    print(
        f"learner: {r['learner_examples_per_second']:,.0f} examples/s, "
        f"max lag {r['max_learner_lag']:,}"
    )
    print(
        f"{r['worker_events']:,} events -> {r['worker_examples']:,} examples, "
        f"{r['learner_examples']:,} trained; drained {r['drain_seconds']:.1f}s after the "
        f"last event was sent ({r['replay_seconds']:.1f}s); the workers were done at "
        f"{r['workers_done_seconds']:.1f}s, the learner {r['learner_after_workers_seconds']:.1f}s "
        "later"
    )
    if r["worker_cpu_seconds"] is not None:
        print(
            f"CPU from the first event sent to the drain ({r['cores']} cores): workers "
            f"{r['worker_cpu_seconds']:.1f}s ({r['worker_cpu_us_per_event']:.0f} us an event), "
            f"learner {r['learner_cpu_seconds']:.1f}s "
            f"({r['learner_cpu_us_per_example']:.0f} us an example), this process (replay, "
            f"sampling) {r['harness_cpu_seconds']:.1f}s, the broker and anything else "
            f"{r['other_cpu_seconds']:.1f}s, idle {r['idle_cpu_seconds']:.1f}s"
        )
    print(
        f"the examples topic holds {r['examples_topic_bytes'] / 1e6:,.1f} MB "
        f"({r['examples_topic_bytes_per_example']:,.0f} bytes an example; "
        f"--producer-compression {r['producer_compression']})"
    )
    load = f"{r['load_at_start']:.2f} at the start, {r['load_at_end']:.2f} at the end"
    print(f"load average (1 min): {load}")


def plot(path: Path, samples: list[Sample], result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for attr, label in (("worker_lag", "workers (interactions)"),
                        ("learner_lag", "learner (training-examples)")):  # fmt: skip
        points = [(s.t, getattr(s, attr)) for s in samples if getattr(s, attr) is not None]
        ax.plot([t for t, _ in points], [n for _, n in points], label=label)
    ax.axvline(result["replay_seconds"], color="grey", linestyle=":", label="last event sent")
    ax.set_xlabel("seconds since the replay began")
    ax.set_ylabel("consumer lag (messages)")
    ax.set_title(
        f"{result['events']:,} events, {result['workers']} worker(s): "
        f"{result['worker_events_per_second']:,.0f} ev/s, learner "
        f"{result['learner_examples_per_second']:,.0f} ex/s",
        fontsize=10,
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
