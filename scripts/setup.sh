#!/usr/bin/env bash
# One idempotent setup for a fresh machine: a virtual environment and pip cache
# outside the clone, the project installed into it, Apache Kafka's broker jars
# resolved from Maven Central, and Debian's prometheus for the monitoring tests.
# A second run downloads nothing: each step is skipped when its stamp matches.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
home=${RECOIL_HOME:-$HOME/.cache/recoil}
venv=$home/venv
export PIP_CACHE_DIR=$home/pip-cache
mkdir -p "$home"

say() { printf '[setup] %s\n' "$*" >&2; }

python=${RECOIL_PYTHON:-python3.11}
if [ ! -x "$venv/bin/python" ]; then
    say "creating virtual environment in $venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip setuptools wheel
fi

# Dependencies: reinstall only when pyproject.toml changes.
deps_stamp=$home/deps.sha256
want=$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)
if [ "$(cat "$deps_stamp" 2>/dev/null)" != "$want" ]; then
    say "installing dependencies (first run downloads torch, several GB)"
    "$venv/bin/pip" install -q -e "$repo[dev]" 2> "$home/pip.log" || { cat "$home/pip.log" >&2; exit 1; }
    echo "$want" > "$deps_stamp"
fi
# The project itself: an editable install pointing at this clone (no download).
# (Run from / so the clone's own recoil/ directory cannot shadow the installed one.)
if ! (cd / && "$venv/bin/python" - "$repo" <<'PY' 2>/dev/null
import pathlib, sys, recoil
sys.exit(pathlib.Path(recoil.__file__).resolve().parents[1] != pathlib.Path(sys.argv[1]).resolve())
PY
); then
    say "pointing the editable install at $repo"
    "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$repo" 2> "$home/pip.log" \
        || { cat "$home/pip.log" >&2; exit 1; }
fi

# Kafka broker jars (Maven Central), once per pom.
"$venv/bin/python" -c "from recoil.broker.jars import kafka_classpath; kafka_classpath()"

# Debian's prometheus (server + promtool) for the monitoring tests.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        say "installing Debian's prometheus"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
    else
        say "prometheus is missing: run 'sudo apt-get install prometheus'"; exit 1
    fi
fi
# Debian starts the packaged service; recoil runs its own on free ports.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
fi
echo "$venv"
