"""``recoil learn`` alone on N examples already in a topic: its examples/s and CPU on
the real broker, without a worker beside it.

    python scripts/learn_alone.py N [recoil learn flags ...]

Starts its own embedded broker, produces ``bench.learner_profile``'s N examples (the
medium world, time order, keyed by user) into a 4-partition topic, then runs ``recoil
learn --threads 1 --stop-when-idle 3`` on it and prints the learner's status lines,
the rate between its first and last status line with examples still waiting, and the
CPU seconds it used (start-up included). ``LINGER`` and ``BATCH`` (environment) set
the producer's ``linger_ms`` and ``batch_size``: small batches as a worker's
transactions write them.
Used for docs/streams.md ("Catch-up steps by the highwater marks").
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time

from bench.learner_profile import produce_worker_examples, worker_examples
from recoil.broker.embedded import EmbeddedKafka
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import recoil_command
from recoil.core.topics import ensure_topics

STATUS = re.compile(
    r"^(\S+ \S+) INFO learner\.continuous_loop: step \d+ \| (\d+) examples .*\| lag (\d+)"
)


def main(count: int, flags: list[str]) -> None:
    values = worker_examples(count)
    with EmbeddedKafka() as kafka:
        settings = KafkaSettings(kafka.bootstrap_servers)
        ensure_topics(settings, ["examples"], partitions=4)
        produce_worker_examples(
            settings, "examples", values,
            linger_ms=int(os.environ.get("LINGER", "20")),
            batch_size=int(os.environ.get("BATCH", str(1 << 20))),
        )  # fmt: skip
        store = tempfile.mkdtemp(prefix="recoil-learn-alone-")
        argv = recoil_command(
            "learn", "--bootstrap-servers", settings.bootstrap_servers, "--store", store,
            "--topic", "examples", "--group", "alone", "--stop-when-idle", "3",
            "--model-updates-topic", "", "--threads", "1", *flags,
        )  # fmt: skip
        started = time.monotonic()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)  # the broker is not reaped yet
        run = subprocess.run(argv, capture_output=True, text=True, check=True)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # the status lines while examples were still waiting (the last one comes after the
    # idle wait that stops the learner)
    points = [
        m.groups()[:2] for m in map(STATUS.match, run.stderr.splitlines()) if m and m[3] != "0"
    ]
    print("\n".join(line for line in run.stderr.splitlines() if STATUS.match(line)))
    if len(points) >= 2:
        (t0, n0), (t1, n1) = points[0], points[-1]
        seconds = _seconds(t1) - _seconds(t0)
        print(f"{int(n1) - int(n0):,} examples in {seconds:.1f} s between the first and last "
              f"status lines: {(int(n1) - int(n0)) / seconds:,.0f} examples/s")  # fmt: skip
    print(f"wall {wall:.1f} s, learner CPU {cpu:.1f} s for {count:,} examples")


def _seconds(stamp: str) -> float:
    """Seconds of a log time stamp ('2026-12-01 20:06:12,903') since midnight."""
    clock = stamp.split()[1].replace(",", ".")
    hours, minutes, seconds = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
