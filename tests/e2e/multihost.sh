#!/usr/bin/env bash
# Several hosts on one HSM (docs/deployment-hsm.md, "Several hosts on one HSM"): two MEFs
# and two MAFs, each its own "host" with its own index, on one remote token per role (lab
# kind softhsm-remote: every PKCS#11 call an RPC to p11-kit server), behind HAProxy in TCP
# mode. Host 1 is the lab's m2m-mef/m2m-maf with the lab's lock files (and the admin CLI,
# which shares them); host 2 is a second m2m-mef with a lock file of its own and a second
# m2m-maf with none. Driven by stock clients only (openssl s_client, gnutls-cli, curl):
# - a device enrolled through MEF 1 is fetched through MEF 2;
# - a KeID that MEF 2 and MAF 2 looked up before host 1 wrote it is found by them at their
#   first lookup after the write (the bound: 0 s, key-lifecycle.md "Answers from memory"),
#   and the Km that MAF 1 fetched for it is used by MAF 2 without a fetch of its own;
# - MEF 2 reports that its lock file does not speak for the token (lock-file-not-shared);
# - an erase on host 1 is seen by MEF 2 and MAF 2 at once;
# - devices connect continuously through HAProxy while MAF 1 is killed: they keep
#   connecting through MAF 2 (handshake counts printed).
. "$(dirname "$0")/lib.sh"
command -v haproxy > /dev/null ||
    { echo "not ok - haproxy is not installed (scripts/deps.sh installs it)"; exit 1; }
e2e_lab multihost --token-kind softhsm-remote --expiry 3600
kpm=$(tr -d ' \n' < "$M2M_KPM_HEX_FILE")

# ---- host 2: a second MEF and a second MAF, configured from the lab's ----
read -r P_TLS P_DTLS P_HTTPS P_MEF_MET P_MAF P_MAF_MET P_MAF_DTLS P_LB_MEF P_LB_MAF \
    <<< "$("$SRC/hsm-config/free-ports" 9 | tr '\n' ' ')"
python3 - "$LAB" "$P_TLS" "$P_DTLS" "$P_HTTPS" "$P_MEF_MET" "$P_MAF" "$P_MAF_MET" \
    "$P_MAF_DTLS" <<'PY'
import json, sys
d, tls, dtls, https, mef_met, maf_port, maf_met, maf_dtls = sys.argv[1:9]
a = "127.0.0.1:"
mef = json.load(open(d + "/mef.json"))
mef["pkcs11"]["lock_file"] = d + "/mef2.lock"  # its own host: its own lock file
mef["mef"].update(bootstrap_tls=a + tls, bootstrap_dtls=a + dtls, https=a + https,
                  metrics=a + mef_met)
json.dump(mef, open(d + "/mef2.json", "w"), indent=2)
maf = json.load(open(d + "/maf.json"))
del maf["pkcs11"]["lock_file"]  # its own host: no lock file at all
maf["maf"].update(listen=a + maf_port, metrics=a + maf_met, listen_dtls=a + maf_dtls)
maf["mefs"][0]["url"] = "https://" + a + https  # host 2's MAF fetches from host 2's MEF
json.dump(maf, open(d + "/maf2.json", "w"), indent=2)
PY

# host2 ROLE PORT: start m2m-ROLE with ROLE2.json on ROLE's token server; wait for PORT.
host2() {
    local role=$1 port=$2 addr="M2M_${1^^}_P11_ADDRESS"
    P11_KIT_SERVER_ADDRESS=${!addr} "$M2M_BIN/m2m-$role" --config "$LAB/${role}2.json" \
        < /dev/null >> "$LAB/${role}2.log" 2>&1 &
    echo $! > "$LAB/${role}2.pid"
    E2E_EXTRA_PIDS+=("$!")
    wait_log "$LAB/${role}2.log" "event=listening .*address=127.0.0.1:$port" 30
}
check "host 2: a second m2m-mef (own lock file) is listening" host2 mef "$P_HTTPS"
check "host 2: a second m2m-maf (no lock file) is listening" host2 maf "$P_MAF"
wait_log "$LAB/mef2.log" "event=ready" 30 > /dev/null
wait_log "$LAB/maf2.log" "event=ready" 30 > /dev/null

# ---- HAProxy in TCP mode in front of both MEFs' TLS bootstrap and both MAFs ----
cat > "$LAB/haproxy.cfg" <<EOF
global
    maxconn 256
defaults
    mode tcp
    timeout connect 2s
    timeout client 20s
    timeout server 20s
    retries 3
    option redispatch
frontend mef_bootstrap
    bind 127.0.0.1:$P_LB_MEF
    default_backend mefs
backend mefs
    balance roundrobin
    server mef1 127.0.0.1:$M2M_MEF_PORT check inter 300ms fall 1 rise 2
    server mef2 127.0.0.1:$P_TLS check inter 300ms fall 1 rise 2
frontend maf_enrolees
    bind 127.0.0.1:$P_LB_MAF
    default_backend mafs
backend mafs
    balance roundrobin
    server maf1 127.0.0.1:$M2M_MAF_PORT check inter 300ms fall 1 rise 2
    server maf2 127.0.0.1:$P_MAF check inter 300ms fall 1 rise 2
EOF
haproxy -c -q -f "$LAB/haproxy.cfg" || { echo "not ok - haproxy.cfg"; exit 1; }
haproxy -db -f "$LAB/haproxy.cfg" < /dev/null >> "$LAB/haproxy.log" 2>&1 &
E2E_EXTRA_PIDS+=("$!")
check "HAProxy listens in front of the MEFs and MAFs" \
    wait_until 20 "ss -ltn | grep -q '127.0.0.1:$P_LB_MAF '"

# ---- clients ----
# bootstrap PORT: s_client's TLS-PSK bootstrap on Kpm; prints the 48 exported bytes (hex).
bootstrap() {
    timeout 10 openssl s_client -connect "127.0.0.1:$1" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
        -psk "$kpm" -psk_identity "$M2M_KPM_ID" -servername "$M2M_MEF_FQDN" \
        -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 < /dev/null 2>&1 |
        awk '/Keying material:/{print tolower($3)}'
}
keid_of() { local x=${1:0:32}; echo "${x^^}@$M2M_MEF_FQDN"; }
# maf_ok PORT KEID KM: an s_client TLS-PSK handshake with the MAF at PORT succeeds.
maf_ok() {
    timeout 10 openssl s_client -connect "127.0.0.1:$1" -tls1_2 -psk "$3" -psk_identity "$2" \
        -servername "$M2M_MAF_ID" < /dev/null 2>&1 | grep -q "Cipher is PSK"
}
# gnutls_ok PORT KEID KM: the same with gnutls-cli.
gnutls_ok() {
    timeout 10 gnutls-cli -p "$1" 127.0.0.1 --pskusername "$2" --pskkey "$3" \
        --priority "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+PSK" < /dev/null 2>&1 |
        grep -q "Handshake was completed"
}
# fetch PORT KEID: curl GET /fetchCredentials at the MEF whose HTTPS is PORT, as the MAF
# (a client certificate for MAF-ID): prints the HTTP status, then the body.
mint_cert "$M2M_MAF_ID"
fetch() {
    curl -sS --max-time 10 --cacert "$M2M_CA_CERT" --cert "$CERT" --key "$KEY" \
        --resolve "$M2M_MEF_FQDN:$1:127.0.0.1" -H "X-M2M-Origin: $M2M_MAF_ID" \
        -w '\n%{http_code}\n' "https://$M2M_MEF_FQDN:$1/fetchCredentials/$2/21" 2> /dev/null |
        tail -1
}
fetch_body() {
    curl -sS --max-time 10 --cacert "$M2M_CA_CERT" --cert "$CERT" --key "$KEY" \
        --resolve "$M2M_MEF_FQDN:$1:127.0.0.1" -H "X-M2M-Origin: $M2M_MAF_ID" \
        "https://$M2M_MEF_FQDN:$1/fetchCredentials/$2/21" 2> /dev/null
}

# ---- 1. enrolled through MEF 1, fetched through MEF 2 ----
x=$(bootstrap "$M2M_MEF_PORT")
check "a device enrolled through MEF 1 (48 bytes exported)" test "${#x}" = 96
KEID1=$(keid_of "$x")
KM1=$(km_of "${x:32:64}" "$M2M_MAF_ID")
check "... MEF 1 stored its Ke" wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KEID1 "
body=$(fetch_body "$P_HTTPS" "$KEID1")
got=$(python3 -c 'import base64,json,sys; print(base64.b64decode(json.load(sys.stdin)["credential"]).hex())' \
    <<< "$body" 2> /dev/null || true)
check "MEF 2 serves that device's Km over HTTPS (curl, 200)" test "$(fetch "$P_HTTPS" "$KEID1")" = 200
check "... and it is the Km of clause 10.3.2 (openssl mac)" test "$got" = "$KM1"
check "MEF 2 logs that its lock file does not speak for the token" \
    wait_log "$LAB/mef2.log" "event=lock-file-not-shared .*mef2.lock"
refuse "... MEF 1, which shares its lock file with the admin CLI, does not" \
    grep -q "event=lock-file-not-shared" "$LAB/mef.log"
refuse "... nor MAF 2, which has no lock file to misplace" \
    grep -q "event=lock-file-not-shared" "$LAB/maf2.log"

# ---- 2. unknown to host 2, written by host 1, found by host 2 at its next lookup ----
# A Ke whose KeID we know in advance: `m2mhsm ke import` on host 1 writes it.
X2=$(openssl rand -hex 48)
KEID2=$(keid_of "$X2")
KM2=$(km_of "${X2:32:64}" "$M2M_MAF_ID")
echo "$X2" > "$LAB/exported2.hex"
check "before host 1 writes it, MEF 2 answers 404 for KeID 2" test "$(fetch "$P_HTTPS" "$KEID2")" = 404
refuse "... and MAF 2 refuses it (unknown psk identity)" maf_ok "$P_MAF" "$KEID2" "$KM2"
check "... after asking MEF 2" wait_log "$LAB/maf2.log" "ke_id=$KEID2"
refuse "... and MAF 2 again (its own lookup misses at the token's epoch)" maf_ok "$P_MAF" "$KEID2" "$KM2"
m2mhsm_on mef ke import --kpm-id kpm-multihost-2 --mef-fqdn "$M2M_MEF_FQDN" \
    --exported-file "$LAB/exported2.hex" --enrolee-id //device.example.com/C0002 \
    --target-id "$M2M_MAF_ID" --enrolment-expiry 3600 > /dev/null
t_written=$(date +%s.%N)
code=$(fetch "$P_HTTPS" "$KEID2")
t_found=$(date +%s.%N)
check "host 1 wrote KeID 2: MEF 2's first lookup after the write finds it (200)" test "$code" = 200
echo "# unknown-then-found at MEF 2: $(awk -v a="$t_written" -v b="$t_found" 'BEGIN{printf "%.3f", b-a}') s from the write's end to the answer (bound: the first lookup after the write)"
check "MAF 1 fetches Km for KeID 2 from MEF 1 and serves it" maf_ok "$M2M_MAF_PORT" "$KEID2" "$KM2"
check "... it fetched (host 1 wrote Km to the MAF token)" \
    wait_log "$LAB/maf.log" "event=fetched ke_id=$KEID2 "
n_fetch2=$(count_log "$LAB/maf2.log" "event=fetched ke_id=$KEID2 ")
check "MAF 2, which had looked KeID 2 up in vain, accepts it at its next handshake" \
    maf_ok "$P_MAF" "$KEID2" "$KM2"
check "... with the Km that MAF 1 fetched: MAF 2 did not fetch it" \
    test "$(count_log "$LAB/maf2.log" "event=fetched ke_id=$KEID2 ")" = "$n_fetch2"
check "... and gnutls-cli is accepted by MAF 2 with it too" gnutls_ok "$P_MAF" "$KEID2" "$KM2"

# ---- 3. a Km fetched by MAF 1 is used by MAF 2; an erase on host 1 is seen by host 2 ----
check "MAF 1 accepts device 1 (fetching Km from MEF 1)" maf_ok "$M2M_MAF_PORT" "$KEID1" "$KM1"
check "MAF 2 accepts device 1 with the Km MAF 1 stored" maf_ok "$P_MAF" "$KEID1" "$KM1"
refuse "... without a fetch of its own" grep -q "event=fetched ke_id=$KEID1 " "$LAB/maf2.log"
m2mhsm_on mef erase --enrolee "$M2M_ENROLEE_ID" > /dev/null
m2mhsm_on maf erase --enrolee "$M2M_ENROLEE_ID" > /dev/null
check "host 1 erased device 1: MEF 2 answers 404 at once" test "$(fetch "$P_HTTPS" "$KEID1")" = 404
refuse "... and MAF 2 refuses device 1 at once" maf_ok "$P_MAF" "$KEID1" "$KM1"
refuse "... and so does MAF 1" maf_ok "$M2M_MAF_PORT" "$KEID1" "$KM1"
check "device 2 is untouched: MAF 2 still accepts it" maf_ok "$P_MAF" "$KEID2" "$KM2"
check "... and so does MAF 1" maf_ok "$M2M_MAF_PORT" "$KEID2" "$KM2"

# ---- 4. enrolment through the load balancer ----
x=$(bootstrap "$P_LB_MEF")
check "a device enrols through HAProxy (either MEF)" test "${#x}" = 96
KEID3=$(keid_of "$x")
check "... and MEF 2 serves its Km whichever MEF enrolled it" \
    test "$(fetch "$P_HTTPS" "$KEID3")" = 200

# ---- 5. devices through HAProxy while MAF 1 is killed ----
# devices OUT N: N client loops (odd ones openssl s_client, even ones gnutls-cli) until
# OUT.stop exists; one line per handshake, "ok" or "fail".
devices() {
    local out=$1 i
    for ((i = 0; i < $2; i++)); do
        (
            while [ ! -e "$out.stop" ]; do
                if ((i % 2 == 0)); then
                    maf_ok "$P_LB_MAF" "$KEID2" "$KM2" && r=ok || r=fail
                else
                    gnutls_ok "$P_LB_MAF" "$KEID2" "$KM2" && r=ok || r=fail
                fi
                echo "$r" >> "$out"
            done
        ) &
        E2E_EXTRA_PIDS+=("$!")
    done
}
handshakes() { grep -c "${2:-.}" "$1" 2> /dev/null || true; }
ok_on() { count_log "$LAB/$1.log" "event=handshake-ok ke_id=$KEID2 "; }
out="$LAB/load"
: > "$out"
maf1_base=$(ok_on maf) maf2_base=$(ok_on maf2)
devices "$out" 4
check "devices connect through HAProxy" wait_until 60 "[ \$(handshakes $out ok) -ge 20 ]"
check "... served by both MAFs" wait_until 60 "[ \$(ok_on maf) -ge 5 ] && [ \$(ok_on maf2) -ge 5 ]"
before_ok=$(handshakes "$out" ok) before_fail=$(handshakes "$out" fail)
maf1_ok=$(($(ok_on maf) - maf1_base)) maf2_before=$(ok_on maf2)
MAF1_PID=$(cat "$LAB/maf.pid")
kill -KILL "$MAF1_PID"
check "MAF 1 is gone (SIGKILL under load)" wait_gone "$MAF1_PID" 10
at_kill=$(wc -l < "$out")
check "devices keep connecting: 40 more good handshakes after the kill" \
    wait_until 120 "[ \$(tail -n +$((at_kill + 1)) $out | grep -c ok) -ge 40 ]"
touch "$out.stop"
after=$(tail -n +$((at_kill + 1)) "$out")
after_ok=$(grep -c ok <<< "$after" || true) after_fail=$(grep -c fail <<< "$after" || true)
maf2_after=$(ok_on maf2)
echo "# load through HAProxy (4 devices: 2 openssl s_client, 2 gnutls-cli loops):"
echo "#   before the kill: $before_ok ok, $before_fail failed (MAF 1 served $maf1_ok, MAF 2 $((maf2_before - maf2_base)))"
echo "#   after SIGKILL of MAF 1: $after_ok ok, $after_fail failed (MAF 2 served $((maf2_after - maf2_before)) more)"
check "... every one after the kill served by MAF 2" test "$((maf2_after - maf2_before))" -ge "$after_ok"
check "... the last 20 handshakes all succeeded" \
    bash -c "[ \$(tail -n 20 '$out' | grep -c ok) -eq 20 ]"
check "MAF 2's metrics (curl) count its good handshakes" \
    bash -c "curl -sS --max-time 10 http://127.0.0.1:$P_MAF_MET/metrics | awk '\$1 == \"m2m_handshakes_total{result=\\\"ok\\\"}\" && \$2 >= $after_ok {f=1} END {exit !f}'"
finish
