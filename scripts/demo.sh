#!/usr/bin/env bash
# The Pre-Provisioned Symmetric Key framework with Enrolment Expiry, end to end, as a
# timeline: a throwaway lab (three SoftHSM tokens, TLS keys inside them), the MEF and MAF
# servers, the device enrolling and connecting, the keys and expiries in each token, the
# expiry closing and refusing what was issued, the device re-provisioning and reconnecting.
# Nothing is left running or on disk. EXPIRY=SECONDS changes the Enrolment Expiry (10).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
mkdir -p build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > build/demo-cmake.log 2>&1 ||
    { cat build/demo-cmake.log; exit 1; }
cmake --build build -j "$(nproc)" > build/demo-build.log 2>&1 || { cat build/demo-build.log; exit 1; }

EXPIRY=${EXPIRY:-10}
LAB=$(mktemp -d "${TMPDIR:-/tmp}/m2mhsm-demo.XXXXXX")
rmdir "$LAB"
held=""
cleanup() {
    [ -n "$held" ] && kill "$held" 2> /dev/null
    [ -f "$LAB/lab.env" ] && bash hsm-config/lab.sh stop "$LAB" > /dev/null 2>&1
    rm -rf "$LAB"
}
trap cleanup EXIT

# wait_log FILE REGEX [SECONDS], wait_count FILE REGEX N [SECONDS]: the servers log
# asynchronously; each step shows its news once the events it expects are logged.
. tests/common/wait.sh

start=$(date +%s.%N)
step() { printf '\n[t+%5.1fs] %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$*"; }
marks() { for f in mef maf enrolee; do wc -l < "$LAB/$f.log" > "$LAB/$f.mark" 2> /dev/null || echo 0 > "$LAB/$f.mark"; done; }
# Log lines since the last mark, without timestamps: "  m2m-maf  event=... fields".
news() {
    local f n
    for f in "$@"; do
        n=$(cat "$LAB/$f.mark" 2> /dev/null || echo 0)
        tail -n "+$((n + 1))" "$LAB/$f.log" 2> /dev/null |
            sed -n -E 's/^time=[^ ]+ level=[a-z]+ prog=([^ ]+) (event=.*)$/    \1  \2/p' |
            grep -v -E 'event=(listening|ready|configured)' || true
    done
}
m() { local t=$1; shift; local up=${t^^} tok pin lock
    tok="M2M_${up}_TOKEN" pin="M2M_${up}_PIN_FILE" lock="M2M_${up}_LOCK_FILE"
    "$M2M_BIN/m2mhsm" --token "${!tok}" --pin-source "file:${!pin}" --lock-file "${!lock}" "$@"; }
lists() { for t in mef maf enrolee; do echo "  -- $t token:"; m "$t" list | sed 's/^/    /'; done; }
device() { "$M2M_BIN/m2m-enrolee" --config "$M2M_ENROLEE_CONFIG" "$@" 2>> "$LAB/enrolee.log"; }

step "hsm-config/lab.sh init: tokens mef, maf, enrolee; a CA and certificates for mef/maf.example.com whose keys are generated in their tokens; Kpm kpm-lab-0001 in the MEF and device tokens; Enrolment Expiry ${EXPIRY}s"
bash hsm-config/lab.sh init "$LAB" --expiry "$EXPIRY" 2>&1 | sed 's/^/    /'
# shellcheck disable=SC1091
. "$LAB/lab.env"
: > "$LAB/enrolee.log"

step "hsm-config/lab.sh start: m2m-mef (bootstrap TLS + DTLS, HTTPS /fetchCredentials) and m2m-maf"
bash hsm-config/lab.sh start "$LAB" 2>&1 | sed 's/^/    /'
marks

step "Device bootstraps: TLS-PSK with the MEF on Kpm (8.3.2.1), both export Ke and KeID into their tokens (10.3.1, 10.3.4); the device derives Km for maf.example.com (10.3.2)"
device bootstrap
news mef enrolee; marks

step "Device connects to the MAF with KeID + Km; the MAF does not know the KeID yet, fetches Km from the MEF over mutual TLS while the handshake waits, and serves it on this connection"
device connect --message "hello from $M2M_ENROLEE_ID" --hold 60 | sed -u 's/^/    device received: /' &
held=$!
wait_log "$LAB/enrolee.log" "event=connected" || true
wait_log "$LAB/maf.log" "event=handshake-ok" || true
news mef maf enrolee; marks

step "What each token holds now (every key sensitive and non-extractable; Km never outlives Ke)"
lists
ke_id=$(m enrolee list --json | python3 -c 'import json,sys; print([r["identity"] for r in json.load(sys.stdin) if r["kind"]=="km"][0])')
expires=$(m enrolee list --json | python3 -c 'import json,sys; print([r["expires"] for r in json.load(sys.stdin) if r["kind"]=="km"][0])')

step "Waiting for the Enrolment Expiry ($expires UTC), with the device's association still open..."
wait "$held" || true
held=""
news maf enrolee; marks

step "Someone presents the expired KeID to the MAF (openssl s_client, as a device with a wrong clock would): the MAF rejects the handshake and erases that Enrolee's credentials (the CR)"
openssl s_client -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_2 -psk "$(openssl rand -hex 32)" \
    -psk_identity "$ke_id" < /dev/null 2>&1 | grep -o -m1 'alert unknown psk identity' | sed 's/^/    s_client: /' || true
wait_log "$LAB/maf.log" "event=rejected-(expired|unknown) ke_id=$ke_id" || true
news maf; marks
echo "  -- maf token:"; m maf list | sed 's/^/    /'

step "The device connects again: its key has expired, so it re-provisions with the MEF, and reconnects"
device connect --message "hello again" | sed 's/^/    device received: /'
wait_count "$LAB/maf.log" "event=handshake-ok" 2 || true
news mef maf enrolee; marks
lists

step "hsm-config/lab.sh stop (SIGTERM: both servers shut down cleanly)"
bash hsm-config/lab.sh stop "$LAB" 2>&1 | sed 's/^/    /'
news mef maf
step "Done; the lab and its tokens are removed."
