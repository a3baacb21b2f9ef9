"""Replay the whole KuaiRand file through the embedded broker and one ``recoil worker``;
print rows, the worker's outcomes and the examples on the output topic (docs/streams.md).

    python scripts/replay_kuairand.py [--keep-file-order] [--file PATH]

Takes about 1.5 minutes on a 2-core machine. The worker is configured as the
integration tests configure theirs (4 partitions, exactly-once, RocksDB,
history 10, half-second commits).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recoil.broker import EmbeddedKafka
from recoil.broker.embedded import free_port
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.labels import LabelConfig
from recoil.core.processes import ProcessGroup, recoil_command
from streams.config import StreamsConfig
from streams.harness import create_topics, metric, read_topic, scrape, start_worker, wait_until
from streams.state import OUTCOMES

KUAIRAND = Path(__file__).resolve().parents[2] / "shared/data/kuairand_k15_likes_hates.tsv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=KUAIRAND)
    parser.add_argument("--keep-file-order", action="store_true")
    args = parser.parse_args()
    rows = sum(1 for _ in args.file.open()) - 1
    work = Path(tempfile.mkdtemp(prefix="recoil-kuairand-"))
    try:
        return run(args.file, rows, args.keep_file_order, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(log: Path, rows: int, keep_file_order: bool, work: Path) -> int:
    with EmbeddedKafka() as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
        config = StreamsConfig(
            app_id="kuairand", input_topic="kuairand.in", output_topic="kuairand.out",
            dlq_topic="kuairand.dlq", data_dir=work / "worker",
            labels=LabelConfig(history_length=10), partitions=4, web_port=free_port(),
            metrics_port=free_port(), commit_interval=0.5, session_timeout=6.0, batch_size=100,
        )  # fmt: skip
        create_topics(kafka, config)
        with ProcessGroup(work / "logs") as group:
            worker = start_worker(group, "worker", kafka, config)
            started = time.monotonic()
            replay = recoil_command(
                "replay", str(log), "--topic", config.input_topic,
                "--bootstrap-servers", broker.bootstrap_servers,
            ) + (["--keep-file-order"] if keep_file_order else [])  # fmt: skip
            done = subprocess.run(replay, capture_output=True, text=True, check=False)
            replayed = time.monotonic() - started
            print(done.stdout.strip())
            print("\n".join(line for line in done.stderr.splitlines() if "ev/s" not in line))
            if done.returncode != 0:
                return done.returncode
            url = f"http://127.0.0.1:{config.metrics_port}/metrics"

            def outcomes() -> dict[str, float]:
                samples = scrape(url)
                return {
                    o: metric(samples, "recoil_stream_events_total", outcome=o) or 0.0
                    for o in OUTCOMES
                }

            wait_until(lambda: sum(outcomes().values()) >= rows, 900, "every row", [worker], 1.0)
            processed = time.monotonic() - started
            counts = outcomes()
            expected = int(counts["positive"] + counts["dislike"] + counts["skip"])
            time.sleep(3.0)  # several commit intervals
            examples = read_topic(kafka, config.output_topic, lambda rs: len(rs) >= expected, 120)
            group.check()
    ids = {r.value for r in examples}
    print(f"rows {rows}; worker outcomes { {k: int(v) for k, v in counts.items()} }")
    print(f"examples {len(examples)} ({len(ids)} distinct); replay {replayed:.1f}s, "
          f"all processed {processed:.1f}s after the replay started")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
