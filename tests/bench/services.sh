#!/usr/bin/env bash
# The services under load (docs/performance.md): make a lab with hsm-config/lab.sh, import one
# test Kpm per load client into the MEF's token and configure it in mef.json, start m2m-mef
# and m2m-maf, run tests/bench/bench_services against them, stop the lab and delete it.
# Run by hand; not a ctest. Prints every command it runs.
#
#   tests/bench/services.sh --build BUILD_DIR [--clients 1,16,256] [--seconds 5]
#                           [--hold 1000] [--openers 16] [--dir DIR] [--keep-lab]
#                           [--token-kind softhsm|softhsm-remote]
#                           [-- more bench_services options]
#
# --token-kind: the lab's kind (hsm-config/lab.sh): softhsm-remote puts every token behind
# p11-kit server, so that every PKCS#11 call of the services is a round trip.
#
# BUILD_DIR was configured with -DM2MHSM_BENCH=ON and built (m2mhsm, m2m-mef, m2m-maf,
# bench_services). The lab goes in DIR (default: a new /tmp/m2m-bench-services.XXXXXX).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
labsh="$repo/hsm-config/lab.sh"
prog=${0##*/}

build="" clients=1,16,256 seconds=5 hold=1000 openers=16 dir="" keep=0 kind=softhsm
extra=()
die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case $1 in
        --build) build=${2:?}; shift 2 ;;
        --clients) clients=${2:?}; shift 2 ;;
        --seconds) seconds=${2:?}; shift 2 ;;
        --hold) hold=${2:?}; shift 2 ;;
        --openers) openers=${2:?}; shift 2 ;;
        --dir) dir=${2:?}; shift 2 ;;
        --keep-lab) keep=1; shift ;;
        --token-kind) kind=${2:?}; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$1' (--help)" ;;
    esac
done
[ -n "$build" ] || die "--build BUILD_DIR is required"
build=$(cd "$build" && pwd)
bench="$build/tests/bench/bench_services"
[ -x "$bench" ] || die "$bench is missing: configure with -DM2MHSM_BENCH=ON and build"
[[ $clients =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--clients: a list like 1,16,256"

# One fresh KpmID per first enrolment: max(c, 32) per level (bench_services.c).
nkpm=0
maxc=0
IFS=, read -r -a levels <<< "$clients"
for c in "${levels[@]}"; do
    nkpm=$((nkpm + (c > 32 ? c : 32)))
    maxc=$((c > maxc ? c : maxc))
done

# Descriptors: the client holds --hold connections (+ the level's clients), and so does the
# MAF, which inherits this limit from lab.sh start.
need_fds=$((hold + 2 * maxc + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ] || [ "$hard" -ge "$need_fds" ]; then
        ulimit -n "$need_fds"
    else
        ulimit -n "$hard"
        echo "$prog: warning: ulimit -n is $hard (hard limit), below the $need_fds wanted" >&2
    fi
fi

run() {
    printf '+ %s\n' "$*"
    "$@"
}

if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/m2m-bench-services.XXXXXX")
    rmdir "$dir"
fi
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    if [ -f "$dir/lab.env" ]; then bash "$labsh" stop "$dir" > /dev/null 2>&1 || true; fi
    if [ "$keep" = 1 ]; then echo "$prog: lab kept in $dir"; else rm -rf -- "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
umask 077

t0=$SECONDS
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(nproc) vCPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# tree: $(git -C "$repo" rev-parse --short HEAD 2> /dev/null || echo '?')$(git -C "$repo" diff --quiet HEAD -- src engine include 2> /dev/null || echo ' (src/engine/include modified)'); build: $build; ulimit -n $(ulimit -n)"
run bash "$labsh" init "$dir" --build "$build" --token-kind "$kind" > "$dir.init.log" 2>&1 ||
    { cat "$dir.init.log"; rm -f "$dir.init.log"; exit 1; }
sed 's/^/  /' "$dir.init.log" | tail -2
rm -f "$dir.init.log"
# shellcheck disable=SC1091
. "$dir/lab.env"

# The load clients' Kpms: random test keys, in the MEF's token (the admin CLI) and, with
# their KpmIDs, in kpms.txt for the client. Never printed. Before the lab starts, so on a
# remote kind through SoftHSM directly (its token servers start with the lab).
mkdir "$dir/bench"
kpms="$dir/bench/kpms.txt"
: > "$kpms"
echo "+ $M2M_BIN/m2mhsm --module $M2M_MODULE --token $M2M_MEF_TOKEN --pin-source file:$M2M_MEF_PIN_FILE --lock-file $M2M_MEF_LOCK_FILE kpm import --kpm-id bench-kpm-NNNN --key-file $dir/bench/bench-kpm-NNNN.hex   # x $nkpm"
t_imp=$SECONDS
for ((i = 1; i <= nkpm; i++)); do
    id=$(printf 'bench-kpm-%04d' "$i")
    openssl rand -hex 32 > "$dir/bench/$id.hex"
    printf '%s %s\n' "$id" "$(< "$dir/bench/$id.hex")" >> "$kpms"
    "$M2M_BIN/m2mhsm" --module "${M2M_DIRECT_MODULE:-$M2M_MODULE}" --token "$M2M_MEF_TOKEN" \
        --pin-source "file:$M2M_MEF_PIN_FILE" --lock-file "$M2M_MEF_LOCK_FILE" \
        kpm import --kpm-id "$id" --key-file "$dir/bench/$id.hex" > /dev/null ||
        die "importing $id failed"
done
echo "# imported $nkpm Kpms into the MEF token in $((SECONDS - t_imp)) s"

# One Bootstrap Instruction Configuration per KpmID; the MEF applies them at start.
python3 - "$M2M_MEF_CONFIG" "$nkpm" "$M2M_MAF_ID" <<'EOF'
import json, sys
path, n, maf = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = json.load(open(path))
for i in range(1, n + 1):
    cfg["enrolees"].append({"kpm_id": "bench-kpm-%04d" % i,
                            "enrolee_id": "//device.example.com/Cbench%04d" % i,
                            "enrolment_target": maf, "enrolment_expiry": "86400"})
with open(path, "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
EOF
echo "# added $nkpm enrolees entries to $M2M_MEF_CONFIG"
t_start=$SECONDS
run bash "$labsh" start "$dir" | sed 's/^/  /'
echo "# lab started in $((SECONDS - t_start)) s; setup took $((SECONDS - t0)) s"

mef_pid=$(< "$dir/mef.pid") maf_pid=$(< "$dir/maf.pid")
rc=0
run "$bench" --kpms "$kpms" --mef "127.0.0.1:$M2M_MEF_PORT" --maf "127.0.0.1:$M2M_MAF_PORT" \
    --raw-dir "$dir/bench/raw" --mef-pid "$mef_pid" --maf-pid "$maf_pid" \
    --mef-log "$dir/mef.log" --maf-log "$dir/maf.log" --mef-fqdn "$M2M_MEF_FQDN" \
    --maf-id "$M2M_MAF_ID" --module "${M2M_DIRECT_MODULE:-$M2M_MODULE}" --clients "$clients" --seconds "$seconds" \
    --hold "$hold" --openers "$openers" "${extra[@]}" || rc=$?

# Server-side problems during the run, from the servers' own logs.
echo
echo "# server log summary (events other than the expected per-connection ones):"
for s in mef maf; do
    grep -o 'level=[a-z]* prog=[^ ]* event=[^ ]*' "$dir/$s.log" | sort | uniq -c |
        grep -v -E 'event=(enrolled|handshake-ok|fetched|configured|listening|ready)$' |
        sed "s/^/#   $s.log: /" || true
done
echo "# MEF VmRSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$mef_pid/status" 2> /dev/null), MAF VmRSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$maf_pid/status" 2> /dev/null) at the end"
run bash "$labsh" stop "$dir" | sed 's/^/  /'
echo "# total $((SECONDS - t0)) s; bench_services exit status $rc"
exit "$rc"
