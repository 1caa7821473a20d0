#!/usr/bin/env bash
# scripts/soak-tests.sh N: run every ctest suite of the gcc build N times while stress-ng
# keeps both cores busy, and print "N passed, M failed" per suite. A suite that fails here
# but passes on an idle machine decides by timing: a bug in the test.
#   SOAK_LOAD   percent of each core stress-ng keeps busy (default 80)
#   SOAK_JOBS   ctest -j (default: the number of cores)
#   SOAK_BUILD  build directory (default build-soak)
#   SOAK_CTEST  extra ctest arguments, e.g. "-R e2e_" (default: none, every suite)
# Failed runs keep their ctest output in $SOAK_BUILD/soak-run-K.log.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:?usage: scripts/soak-tests.sh N}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "soak-tests: N must be a positive number" >&2; exit 2; }
load=${SOAK_LOAD:-80}
jobs=${SOAK_JOBS:-$(nproc)}
dir=${SOAK_BUILD:-build-soak}

bash scripts/deps.sh stress-ng
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build "$dir" -j "$jobs" > "$dir/build.log" 2>&1 || { cat "$dir/build.log"; exit 1; }

# The load: one stress-ng worker per core, stopped on any exit of this script. Its own
# timeout bounds it should this script be killed outright.
stress-ng --cpu "$(nproc)" --cpu-load "$load" --timeout "$((runs * 900))s" --quiet &
stress=$!
trap 'kill "$stress" 2> /dev/null || true; wait "$stress" 2> /dev/null || true' EXIT
echo "soak: $runs runs of every suite in $dir, ctest -j$jobs, stress-ng at $load% of $(nproc) cores"

results="$dir/soak-results.txt"
: > "$results"
for ((k = 1; k <= runs; k++)); do
    rm -f "$dir/soak.xml"
    start=$SECONDS
    (cd "$dir" && ctest -j "$jobs" --output-junit soak.xml ${SOAK_CTEST:-}) > "$dir/soak-run-$k.log" 2>&1 || true
    [ -s "$dir/soak.xml" ] || { cat "$dir/soak-run-$k.log"; echo "soak: run $k produced no results" >&2; exit 1; }
    python3 - "$dir/soak.xml" >> "$results" <<'PY'
import sys, xml.etree.ElementTree as ET
for t in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    print(t.get("name"), "fail" if t.get("status") not in ("run", "passed") else "pass")
PY
    echo "soak: run $k/$runs in $((SECONDS - start)) s"
    grep -q "^The following tests FAILED" "$dir/soak-run-$k.log" || rm -f "$dir/soak-run-$k.log"
done

python3 - "$results" <<'PY'
import collections, sys
tally = collections.OrderedDict()
for line in open(sys.argv[1]):
    name, outcome = line.split()
    p, f = tally.get(name, (0, 0))
    tally[name] = (p + (outcome == "pass"), f + (outcome == "fail"))
width = max(len(n) for n in tally)
for name, (p, f) in tally.items():
    print("%-*s %d passed, %d failed" % (width + 1, name + ":", p, f))
tp = sum(p for p, f in tally.values())
tf = sum(f for p, f in tally.values())
print("total: %d passed, %d failed" % (tp, tf))
sys.exit(1 if tf else 0)
PY
