#!/usr/bin/env bash
# Mutation testing of recoil's pure modules with mutmut (docs/testing.md).
#
#   scripts/mutation.sh [MODULE ...]     default: every module in TESTS below
#   MUTATION_TESTS="tests/unit/x.py" scripts/mutation.sh MODULE   other tests for one run
#
# mutmut lives in its own virtual environment, installed on first use: it needs
# click>=8.4 and faust pins click<8.4, so it cannot share the project's venv. A
# .pth file makes the project venv's packages (torch, numpy, aiohttp, ...)
# importable from it, after mutmut's own.
#
# Each module runs in a fresh scratch copy of the working tree (tracked and
# untracked, not ignored files), never in the tree itself, one module at a time,
# one child process, under `nice`; each mutant runs only the tests listed for
# its module. Reports land in out/mutation/<module>.txt: the survivors with
# their diffs, and a last line "<module>: killed K, survived S, score P%".
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
home=${RECOIL_HOME:-$HOME/.cache/recoil}
venv=$home/venv
mvenv=$home/mutmut-venv
out=${MUTATION_OUT:-$repo/out/mutation}
MUTMUT_VERSION=3.8.1

# module -> the tests that exercise it (kept small: each mutant runs those that reach it)
declare -A TESTS=(
    [learner/loss.py]="tests/unit/test_loss.py tests/unit/test_loss_extremes.py"
    [recoil/core/labels.py]="tests/unit/test_labels_windows.py tests/unit/test_labels_exact.py"
    [recoil/core/windows.py]="tests/unit/test_labels_windows.py tests/unit/test_labels_exact.py"
    [simulator/metrics.py]="tests/unit/test_simulator_metrics.py tests/unit/test_simulator_bootstrap.py"
    [recoil/core/events.py]="tests/unit/test_events.py tests/unit/test_events_exact.py"
    [simulator/probe.py]="tests/unit/test_probe.py tests/unit/test_probe_exact.py"
    [serving/requests.py]="tests/functional/test_serving_app.py tests/unit/test_serving_requests.py"
)
ORDER=(learner/loss.py recoil/core/labels.py recoil/core/windows.py simulator/metrics.py
       recoil/core/events.py simulator/probe.py serving/requests.py)
PACKAGES=(recoil streams learner simulator monitoring bench)

say() { printf '[mutation] %s\n' "$*" >&2; }

if [ ! -x "$mvenv/bin/mutmut" ]; then
    say "installing mutmut $MUTMUT_VERSION into $mvenv"
    python=${RECOIL_PYTHON:-$venv/bin/python}
    "$(readlink -f "$python")" -m venv "$mvenv"
    "$mvenv/bin/pip" install -q "mutmut==$MUTMUT_VERSION"
fi
site=$("$mvenv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
project_site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "import site; site.addsitedir('$project_site')" > "$site/zz-recoil-venv.pth"

modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=("${ORDER[@]}")
mkdir -p "$out"

for module in "${modules[@]}"; do
    tests=${MUTATION_TESTS:-${TESTS[$module]:-}}  # MUTATION_TESTS: other tests, e.g. a baseline
    [ -n "$tests" ] || { say "no tests listed for $module"; exit 2; }
    name=$(echo "${module%.py}" | tr / _)
    scratch=$(mktemp -d "/tmp/recoil-mutation-$name.XXXXXX")
    (cd "$repo" && git ls-files -z -co --exclude-standard \
        | xargs -0 tar --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$scratch"
    existing=()
    for t in $tests; do [ -e "$scratch/$t" ] && existing+=("$t"); done
    {
        echo "[mutmut]"
        echo "source_paths=$module"
        echo "also_copy="
        printf '    %s\n' "${PACKAGES[@]}"
        echo "pytest_add_cli_args_test_selection="
        printf '    %s\n' "${existing[@]}"
        echo "pytest_add_cli_args="
        echo "    -p"
        echo "    no:cacheprovider"
    } > "$scratch/setup.cfg"
    say "$module: ${existing[*]} (in $scratch)"
    (
        cd "$scratch"
        nice -n 10 "$mvenv/bin/mutmut" run --max-children 1 > mutmut-run.log 2>&1 \
            || { tail -c 4000 mutmut-run.log >&2; exit 1; }
        "$mvenv/bin/mutmut" results --all true 2>/dev/null > results.txt
        report=$out/$name.txt
        : > "$report"
        for mutant in $(grep -E ': survived$' results.txt | sed 's/:.*//'); do
            "$mvenv/bin/mutmut" show "$mutant" 2>/dev/null | grep -E '^[-+] ' >> "$report" || true
            echo "  ^ $mutant" >> "$report"
        done
        killed=$(grep -cE ': (killed|timeout)$' results.txt || true)
        survived=$(grep -cE ': survived$' results.txt || true)
        other=$(grep -vcE ': (killed|timeout|survived)$' results.txt || true)
        score=$(awk -v k="$killed" -v s="$survived" 'BEGIN { printf "%.1f", 100 * k / (k + s) }')
        echo "$module: killed $killed, survived $survived, score $score% (other: $other)" \
            | tee -a "$report" >&2
    )
    rm -rf "$scratch"
done
