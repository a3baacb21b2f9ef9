"""Resolve Apache Kafka's broker jars from Maven Central into a cache outside the clone.

The pom beside this file names ``org.apache.kafka:kafka_2.13`` and a logging
backend; Maven copies the runtime closure into ``$RECOIL_HOME/kafka-<hash>/libs``.
The directory name carries the pom's hash, so a changed pom resolves again and
an unchanged one never touches the network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

POM = Path(__file__).with_name("pom.xml")


def recoil_home() -> Path:
    """Where caches live: ``$RECOIL_HOME`` or ``~/.cache/recoil``."""
    return Path(os.environ.get("RECOIL_HOME", Path.home() / ".cache" / "recoil"))


def kafka_classpath(home: Path | None = None) -> Path:
    """Return the directory holding the broker's jars, resolving them once if needed."""
    home = home or recoil_home()
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    libs = home / f"kafka-{digest}" / "libs"
    if (libs / ".complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is not installed: it resolves Kafka's broker jars")
    if shutil.which("java") is None:
        raise RuntimeError("java is not installed: Kafka's broker needs JDK 17 or newer")
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mvn could not resolve Kafka's jars:\n{done.stdout}\n{done.stderr}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (libs / ".complete").touch()
    return libs


if __name__ == "__main__":
    print(kafka_classpath())
    sys.exit(0)
