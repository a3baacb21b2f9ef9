"""monitoring/prometheus.yml adapted to given targets: for tests, the compose stack, any host list.

The job names, rule files and global labels stay those of the committed
config, so a check against the adapted config checks the real one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from monitoring.catalogue import Part
from monitoring.rules import ALERTS_FILE, RECORDING_FILE

CONFIG_FILE = Path(__file__).with_name("prometheus.yml")
RULE_FILES = (RECORDING_FILE, ALERTS_FILE)
# The scrape job of each part in monitoring/prometheus.yml.
JOBS: dict[Part, str] = {
    Part.STREAMS: "recoil-stream",
    Part.LEARNER: "recoil-learner",
    Part.SERVING: "recoil-serving",
    Part.SIMULATOR: "recoil-simulator",
}
ALL_IN_ONE_JOB = "recoil"  # the job for a plain target list whose roles are not told apart


def load_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(CONFIG_FILE.read_text())
    return config


def scrape_config_for(
    targets: Mapping[str, Sequence[str]] | Sequence[str],
    interval: str = "1s",
    rule_files: Sequence[str | Path] = RULE_FILES,
) -> str:
    """The committed config scraping ``targets`` (``host:port``) every ``interval``.

    ``targets`` maps a job name (``recoil-stream``...) or part (``streams``...) to its
    targets; jobs without targets are dropped. A plain list puts every target in one
    job, ``recoil``. Rule files are written as given (absolute paths for a server
    started elsewhere).
    """
    config = load_config()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    if isinstance(targets, Mapping):
        by_job: dict[str, list[str]] = {}
        for key, hosts in targets.items():
            job = JOBS[Part(key)] if key in {p.value for p in Part} else key
            if job not in jobs:
                raise ValueError(f"no scrape job {key!r} in {CONFIG_FILE}: use one of {list(jobs)}")
            by_job[job] = list(hosts)
        scrape = [
            jobs[name] | {"static_configs": [{"targets": hosts}]}
            for name, hosts in by_job.items()
            if hosts
        ]
    else:
        template = next(iter(jobs.values()))
        scrape = [
            template | {"job_name": ALL_IN_ONE_JOB, "static_configs": [{"targets": list(targets)}]}
        ]
    for job in scrape:
        for target in job["static_configs"][0]["targets"]:
            host, _, port = target.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"metrics target {target!r} is not host:port")
    config["global"] |= {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(path) for path in rule_files]
    config["scrape_configs"] = scrape
    return yaml.safe_dump(config, sort_keys=False)
