#!/usr/bin/env bash
# Build the libFuzzer harnesses (tests/fuzz, docs/testing.md "Fuzzing") and run each for
# SECONDS, one after another on one core, from a scratch copy of its committed corpus.
# Prints one line per harness (executions, crashes) and "N passed, M failed"; exits 1 if
# any harness crashed. Usage: scripts/fuzz.sh SECONDS [HARNESS...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh SECONDS [HARNESS...]" >&2
    exit 2
fi
shift
build=${M2MHSM_FUZZ_BUILD:-build-fuzz}
rss_mb=2048 # fixed, so that a run's memory ceiling does not depend on the machine

# Debian's clang and libFuzzer; installed when missing and we may.
missing=()
for pkg in clang libfuzzer-14-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "fuzz.sh: missing packages: ${missing[*]} (apt-get install -y ${missing[*]})" >&2
        exit 2
    fi
    apt-get install -y "${missing[@]}" >/dev/null ||
        { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
fi

mkdir -p "$build"
CC=clang cmake -S . -B "$build" -DM2MHSM_FUZZ=ON -DM2MHSM_TESTS=OFF -DM2MHSM_BENCH=OFF \
    >"$build/configure.log" 2>&1 || { cat "$build/configure.log" >&2; exit 1; }
cmake --build "$build" -j2 >"$build/build.log" 2>&1 || { tail -40 "$build/build.log" >&2; exit 1; }

harnesses=("$@")
if ((${#harnesses[@]} == 0)); then
    for dir in tests/fuzz/corpus/*/; do
        harnesses+=("$(basename "$dir")")
    done
fi

scratch=$(mktemp -d /tmp/m2mhsm-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"
passed=0
failed=0
for h in "${harnesses[@]}"; do
    bin="$build/tests/fuzz/$h"
    if [[ ! -x $bin ]]; then
        echo "$h: no such harness"
        failed=$((failed + 1))
        continue
    fi
    work="$scratch/$h"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp tests/fuzz/corpus/"$h"/* "$work/corpus/" 2>/dev/null || true
    # -close_fd_mask=2: the parsers' own error messages would flood the log; libFuzzer and
    # the sanitizers report on a descriptor of their own.
    rc=0
    "$bin" -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=30 -close_fd_mask=2 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" \
        >"$work/log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
    crashes=$(find "$work/artifacts" -type f | wc -l)
    if ((rc != 0 && crashes == 0)); then
        crashes=1 # died without writing an artifact
    fi
    if ((crashes == 0)); then
        passed=$((passed + 1))
        echo "$h: ${seconds} s, ${execs:-0} executions, 0 crashes"
    else
        failed=$((failed + 1))
        mkdir -p "$artifacts/$h"
        cp "$work/artifacts/"* "$artifacts/$h/" 2>/dev/null || true
        cp "$work/log" "$artifacts/$h/log"
        echo "$h: ${seconds} s, ${execs:-0} executions, $crashes crashes (exit $rc; reproducer and log in $artifacts/$h/)"
    fi
done
echo "$passed passed, $failed failed"
((failed == 0))
