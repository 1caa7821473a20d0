#!/usr/bin/env bash
# HSM failover without a restart (docs/deployment-hsm.md, "Failover"): every token behind
# its own `p11-kit server` (lab kind softhsm-remote), devices connecting continuously with
# stock `openssl s_client`, and each service's token server killed and started again on the
# same address (`lab.sh restart-token`): the first handshake after the token is back
# succeeds (time to it printed and bounded by 5 s), nothing stored is lost, no process
# restarted; a longer outage fails handshakes fast (never a hang); a server started while
# its token server is down refuses at once with the reason.
. "$(dirname "$0")/lib.sh"
e2e_lab failover --token-kind softhsm-remote --expiry 3600 --tls13
kpm=$(tr -d ' \n' < "$M2M_KPM_HEX_FILE")
BACK_WITHIN=5 # seconds: the issue's target for the first good handshake after a failover

now() { date +%s.%N; }
# secs A B: B - A in seconds, 3 decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# ---- a device enrols at the MEF and is known at the MAF ----
bootstrap() { # → the exported keying material (96 hex digits), or nothing
    timeout 10 openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" -tls1_2 \
        -cipher PSK-AES128-CBC-SHA256 -psk "$kpm" -psk_identity "$M2M_KPM_ID" \
        -servername "$M2M_MEF_FQDN" -keymatexport EXPORTER-oneM2M-Bootstrap \
        -keymatexportlen 48 < /dev/null 2>&1 | awk '/Keying material:/{print tolower($3)}'
}
x=$(bootstrap)
check "a device enrolled at the MEF behind p11-kit server (48 bytes exported)" test "${#x}" = 96
KEID="${x:0:32}"
KEID="${KEID^^}@$M2M_MEF_FQDN"
KM=$(km_of "${x:32:64}" "$M2M_MAF_ID")
maf_handshake() {
    timeout 10 openssl s_client -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_2 -psk "$KM" \
        -psk_identity "$KEID" -servername "$M2M_MAF_ID" < /dev/null 2>&1 |
        grep -q "Cipher is PSK"
}
# TLS 1.3 external PSK at the same port: the provider's TLS13-KDF path.
maf13_handshake() {
    timeout 10 openssl s_client -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_3 -psk "$KM" \
        -psk_identity "$KEID" < /dev/null 2>&1 | grep -q "Cipher is TLS_AES_128_GCM_SHA256"
}
mef_handshake() { x=$(bootstrap) && test "${#x}" = 96; }
check "the MAF accepted KeID + Km (its certificate key fetched the Km over HTTPS)" maf_handshake
check "... after fetching the Km from the MEF" wait_log "$LAB/maf.log" "event=fetched ke_id=$KEID"

# listing ROLE: the records of a token, as the CLI lists them through the role's server.
listing() { m2mhsm_on "$1" list --json | python3 -c 'import json,sys
for r in sorted(json.load(sys.stdin), key=lambda r: (r["kind"], r["identity"])):
    print(r["kind"], r["identity"], r.get("expires", ""))'; }
maf_before=$(listing maf)
mef_before=$(listing mef | grep -v '^ke ')
check "the MAF token lists the device's Km" grep -q "^km $KEID " <<< "$maf_before"
MEF_PID=$(cat "$LAB/mef.pid") MAF_PID=$(cat "$LAB/maf.pid")

# ---- devices connecting continuously: one line per handshake, "start end ok|fail" ----
# devices ROLE OUT: until $OUT.stop exists.
devices() {
    local fn="${1}_handshake" out=$2 t0 r
    while [ ! -e "$out.stop" ]; do
        t0=$(now)
        if "$fn"; then r=ok; else r=fail; fi
        echo "$t0 $(now) $r" >> "$out"
    done
}
# handshakes OUT: how many lines so far.
handshakes() { wc -l < "$1" 2> /dev/null || echo 0; }
# first_ok_after OUT T: end time of the first good handshake that started at or after T.
first_ok_after() { awk -v t="$2" '$1 >= t && $3 == "ok" { print $2; exit }' "$1"; }
fails_between() { awk -v a="$2" -v b="$3" '$2 >= a && $1 <= b && $3 == "fail"' "$1" | wc -l; }
slowest() { awk 'BEGIN { m = 0 } { d = $2 - $1; if (d > m) m = d } END { printf "%.3f", m }' "$1"; }

# failover DEVICES ROLE: restart-token ROLE while DEVICES (maf, maf13, mef) connect to the
# service of ROLE; prints the figures.
failover() {
    local dev=$1 role=$2 out="$LAB/hs-$1" n t_kill t_back t_ok lost back
    lost=$(count_log "$LAB/$role.log" "event=token_lost ")
    back=$(count_log "$LAB/$role.log" "event=token_back ")
    : > "$out"
    rm -f "$out.stop"
    devices "$dev" "$out" &
    local loop=$!
    E2E_EXTRA_PIDS+=("$loop")
    check "$role devices: handshakes are running before the failover" \
        wait_until 30 "[ \$(handshakes $out) -ge 5 ]"
    t_kill=$(now)
    bash "$LABSH" restart-token "$LAB" "$role" > /dev/null
    t_back=$(now)
    wait_count "$LAB/$role.log" "event=token_back " $((back + 1)) 30 || true
    wait_until 30 "[ -n \"\$(first_ok_after $out $t_back)\" ]" || true
    n=$(handshakes "$out")
    wait_until 30 "[ \$(handshakes $out) -ge $((n + 5)) ]" || true
    touch "$out.stop"
    wait "$loop" 2> /dev/null || true
    t_ok=$(first_ok_after "$out" "$t_back")
    check "$role token: the service logged token_lost with the CKR" \
        test "$(count_log "$LAB/$role.log" "event=token_lost .*ckr=CKR_[A-Z_]+")" -gt "$lost"
    check "$role token: ... and token_back" \
        test "$(count_log "$LAB/$role.log" "event=token_back ")" -gt "$back"
    check "$role token: a handshake succeeded after the token was back" test -n "$t_ok"
    local took
    took=$(secs "$t_back" "${t_ok:-$t_back}")
    check "$role token: the first good handshake came ${took}s after the server was back (< ${BACK_WITHIN}s)" \
        awk -v d="$took" -v m="$BACK_WITHIN" 'BEGIN { exit !(d < m) }'
    local failed total
    failed=$(fails_between "$out" "$t_kill" "${t_ok:-$t_back}")
    total=$(handshakes "$out")
    echo "# failover $role ($dev devices): restart-token took $(secs "$t_kill" "$t_back")s;" \
        "first good handshake ${took}s after the server was back;" \
        "$failed failed handshake(s) during the outage; $total handshakes in all;" \
        "$(grep -c " ok$" "$out") ok; $(grep "event=token_back " "$LAB/$role.log" | tail -1 | grep -o 'down_ms=[0-9]*')"
    check "$role token: every handshake after the first good one succeeded" \
        test "$(awk -v t="$t_ok" '$1 > t && $3 == "fail"' "$out" | wc -l)" = 0
}

failover maf maf
check "the MAF token lists the same records after its failover" test "$(listing maf)" = "$maf_before"
failover maf13 maf
check "the MAF token lists the same records after its TLS 1.3 failover" \
    test "$(listing maf)" = "$maf_before"
failover mef mef
check "the MEF token lists the same Kpm and enrolment records after its failover" \
    test "$(listing mef | grep -v '^ke ')" = "$mef_before"
check "... and exactly one Ke (each bootstrap re-enrols the device, replacing the last)" \
    test "$(listing mef | grep -c '^ke ')" = 1
check "the MEF and the MAF were never restarted (same pids)" \
    test "$(cat "$LAB/mef.pid") $(cat "$LAB/maf.pid")" = "$MEF_PID $MAF_PID"
check "... and are still running" eval "running $MEF_PID && running $MAF_PID"
x=$(bootstrap)
KEID="${x:0:32}"
KEID="${KEID^^}@$M2M_MEF_FQDN"
KM=$(km_of "${x:32:64}" "$M2M_MAF_ID")
check "after both failovers a new enrolment's Km is fetched and accepted (both certificate keys sign)" \
    maf_handshake

# ---- a longer outage: handshakes fail fast, then succeed when the token is back ----
out="$LAB/hs-outage"
: > "$out"
rm -f "$out.stop"
devices maf "$out" &
loop=$!
E2E_EXTRA_PIDS+=("$loop")
wait_until 30 "[ \$(handshakes $out) -ge 3 ]" || true
bash "$LABSH" stop-token "$LAB" maf > /dev/null
t_down=$(now)
check "outage: handshakes fail while the MAF's token server is down" \
    wait_until 30 "[ \$(fails_between $out $t_down 9e9) -ge 5 ]"
check "outage: the MAF says the token is lost and when it tries again" \
    wait_log "$LAB/maf.log" "token lost \(CKR_DEVICE_ERROR\)"
bash "$LABSH" start-token "$LAB" maf > /dev/null
t_back=$(now)
check "outage: a handshake succeeds after the token server is back" \
    wait_until 30 "[ -n \"\$(first_ok_after $out $t_back)\" ]"
touch "$out.stop"
wait "$loop" 2> /dev/null || true
t_ok=$(first_ok_after "$out" "$t_back")
took=$(secs "$t_back" "${t_ok:-$t_back}")
check "outage: the first good handshake came ${took}s after the server was back (< ${BACK_WITHIN}s)" \
    awk -v d="$took" -v m="$BACK_WITHIN" 'BEGIN { exit !(d < m) }'
echo "# outage: $(secs "$t_down" "$t_back")s down, $(fails_between "$out" "$t_down" "$t_back") failed" \
    "handshakes, slowest handshake $(slowest "$out")s; first good one ${took}s after the server was back"
# A hung call would hold its handshake until s_client's 10 s timeout; a loaded machine never
# takes that long for one that fails at once.
check "outage: no handshake hung (each one ended before s_client's 10 s timeout)" \
    awk -v d="$(slowest "$out")" 'BEGIN { exit !(d < 9) }'
check "outage: the MAF was not restarted" test "$(cat "$LAB/maf.pid")" = "$MAF_PID"

# ---- the device on its own remote token ----
check "m2m-enrolee enrols and connects with its token behind p11-kit server" \
    env P11_KIT_SERVER_ADDRESS="$M2M_ENROLEE_P11_ADDRESS" "$M2M_BIN/m2m-enrolee" \
    --config "$M2M_ENROLEE_CONFIG" connect
check "... the MAF accepted it" wait_log "$LAB/maf.log" "event=handshake-ok ke_id=$(device_ke_id) "

# ---- a server started while its token server is down refuses at once ----
bash "$LABSH" stop "$LAB" > /dev/null
bash "$LABSH" stop-token "$LAB" maf > /dev/null
rc=0
P11_KIT_SERVER_ADDRESS=$M2M_MAF_P11_ADDRESS timeout 30 "$M2M_BIN/m2m-maf" \
    --config "$M2M_MAF_CONFIG" > "$LAB/down-start.log" 2>&1 || rc=$?
echo "# start with the token server down: exit $rc: $(grep -m1 "event=token-open-failed" "$LAB/down-start.log")"
check "m2m-maf with its token server down exits with status 1 (not a hang: timeout gives 124)" \
    test "$rc" = 1
check "... saying why: the token is not reachable" \
    grep -q -F "no initialised token matches pkcs11:token\x3dmaf (the module lists 0 slots: is its token or server reachable?)" \
    "$LAB/down-start.log"

# What a failed run needs for its diagnosis: the services' last lines and the handshakes.
if [ "$failures" -gt 0 ]; then
    for f in "$LAB"/mef.log "$LAB"/maf.log "$LAB"/p11/*.log "$LAB"/hs-*; do
        echo "# --- $f (last 15 lines)"
        tail -n 15 "$f" 2> /dev/null | sed 's/^/# /'
    done
fi
finish
