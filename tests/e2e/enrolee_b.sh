#!/usr/bin/env bash
# The Enrolee B (m2m-eb; TS-0003 8.2.2.1 and the CR's change 1: it plays the MAF's role with
# Kpsa), with stock peers as the device: `openssl s_client` enrols at the MEF with the
# second device's Kpm (M2M_KPM_B_ID, whose Enrolment Target is M2M_EB_ID), `openssl mac`
# computes Kpsa from the exported Ke (10.3.3), and `openssl s_client` (TLS 1.2 and 1.3 on
# one port) and `gnutls-cli --udp` (DTLS 1.2) are served by the Enrolee B, which fetches
# the Kpsa from the MEF with SUID 22 while the first handshake waits. A wrong key is
# refused; the MAF can neither fetch that Kpsa nor use that KeID; m2m-enrolee reaches the
# Enrolee B over TLS and DTLS; the Kpsa is sensitive and not extractable on the eb token;
# its lifetime is the Ke's (the CR); SIGHUP reloads; after the expiry the Enrolee B closes
# the open association, refuses the key and erases it, by handshake and by sweep.
. "$(dirname "$0")/lib.sh"
e2e_lab eb --expiry 600 --tls13
kpm_b=$(tr -d ' \n' < "$M2M_KPM_B_HEX_FILE")
dtls="NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM-8:-MAC-ALL:+AEAD"

check "the Enrolee B serves TLS 1.2 and 1.3 on M2M_EB_PORT" \
    wait_log "$LAB/eb.log" "event=listening service=enrolees transport=tls1.2\+tls1.3 address=127.0.0.1:$M2M_EB_PORT"
check "... DTLS 1.2 on M2M_EB_DTLS_PORT" \
    wait_log "$LAB/eb.log" "event=listening service=enrolees transport=dtls1.2 address=127.0.0.1:$M2M_EB_DTLS_PORT"
check "... as its absolute CSE-ID" wait_log "$LAB/eb.log" "event=ready enrolee_b_id=$M2M_EB_ID$"

# bootstrap_b: openssl s_client enrols with the second device's Kpm; sets KEID, KE, KPSA.
bootstrap_b() {
    local out x
    out=$(openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" -tls1_2 \
        -cipher PSK-AES128-CBC-SHA256 -psk "$kpm_b" -psk_identity "$M2M_KPM_B_ID" \
        -servername "$M2M_MEF_FQDN" -keymatexport EXPORTER-oneM2M-Bootstrap \
        -keymatexportlen 48 < /dev/null 2>&1 || true)
    x=$(awk '/Keying material:/{print tolower($3)}' <<< "$out")
    EXPORTED_LEN=${#x}
    KEID="${x:0:32}"
    KEID="${KEID^^}@$M2M_MEF_FQDN"
    KE=${x:32:64}
    KPSA=$(kpsa_of "$KE" "$M2M_EB_ID")
}
# Kpsa = HMAC-SHA-256(Ke, label || Enrolee-B-ID) (clause 10.3.3) with openssl mac.
kpsa_of() {
    printf 'oneM2M Enrolment Key to Provisioned Secure Connection Key derivation%s' "$2" |
        openssl mac -digest SHA256 -macopt "hexkey:$1" HMAC | tr 'A-F' 'a-f'
}
# eb VERSION-OPTION PSK IDENTITY: s_client at the Enrolee B's port → what it sent back.
eb() {
    local suite=()
    if [ "$1" = -tls1_2 ]; then suite=(-cipher PSK-AES128-CBC-SHA256); fi
    session "$LAB/s.out" --send ping -- openssl s_client -quiet -no_ign_eof "$1" "${suite[@]}" \
        -connect "127.0.0.1:$M2M_EB_PORT" -psk "$2" -psk_identity "$3"
    cat "$LAB/s.out"
}
# record TOKEN KEID FIELD: one field of the listed record of that identity ("" if none).
record() {
    m2mhsm_on "$1" list --json | python3 -c 'import json,sys
r=[x for x in json.load(sys.stdin) if x["identity"]==sys.argv[1]]
print(json.dumps(r[0].get(sys.argv[2])).strip("\"") if r else "")' "$2" "$3"
}

# ---- openssl as the device: bootstrap, openssl mac, TLS 1.2 at the Enrolee B ----
bootstrap_b
KEID1=$KEID KPSA1=$KPSA
check "openssl s_client bootstrapped with M2M_KPM_B_ID and exported 48 bytes" \
    test "$EXPORTED_LEN" = 96
check "the MEF enrolled that KeID for the Enrolee B target" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_B_ID ke_id=$KEID1 .*target=$M2M_EB_ID "
check "openssl mac computed a 32-byte Kpsa" test "${#KPSA1}" = 64
check "the Enrolee B does not hold it yet" test -z "$(record eb "$KEID1" kind)"
out=$(eb -tls1_2 "$KPSA1" "$KEID1")
check "s_client -tls1_2 authenticated at the Enrolee B with KeID and the openssl-mac Kpsa" \
    grep -q "m2m-eb $M2M_EB_ID: authenticated $KEID1 until" <<< "$out"
check "... and the association carries data" grep -qx ping <<< "$out"
check "... with PSK-AES128-CBC-SHA256" \
    wait_log "$LAB/eb.log" "event=handshake-ok ke_id=$KEID1 .*cipher=PSK-AES128-CBC-SHA256 "
check "the Enrolee B fetched that Kpsa (SUID 22) while the handshake waited" \
    wait_log "$LAB/eb.log" "event=fetched ke_id=$KEID1 enrolee_id=$M2M_ENROLEE_B_ID .*key=kpsa"
check "... from the MEF, which checked its certificate against $M2M_EB_ID" \
    wait_log "$LAB/mef.log" "event=fetched ke_id=$KEID1 suid=22 originator=$M2M_EB_ID enrolee_id=$M2M_ENROLEE_B_ID "
out=$(eb -tls1_3 "$KPSA1" "$KEID1")
check "s_client -tls1_3 authenticated at the same port with the same KeID and Kpsa" \
    grep -q "authenticated $KEID1 until" <<< "$out"
check "... over TLS 1.3" \
    wait_log "$LAB/eb.log" "event=handshake-ok ke_id=$KEID1 .*cipher=TLS_AES_128_GCM_SHA256 "
check "... fetched once" test "$(count_log "$LAB/eb.log" "event=fetched ke_id=$KEID1 ")" = 1

# ---- the Kpsa on the eb token: kind, target, lifetime = Ke's, not extractable ----
check "m2mhsm list on the eb token: a kpsa record for that KeID" \
    test "$(record eb "$KEID1" kind)" = kpsa
check "... whose target is the Enrolee B" test "$(record eb "$KEID1" target)" = "$M2M_EB_ID"
check "... sensitive (CKA_SENSITIVE, as the token reports it)" \
    test "$(record eb "$KEID1" sensitive)" = true
check "... and not extractable (CKA_EXTRACTABLE false)" \
    test "$(record eb "$KEID1" extractable)" = false
check "... expiring with the Ke at the MEF (the CR: Kpsa never outlives Ke)" \
    test "$(record eb "$KEID1" expires)" = "$(record mef "$KEID1" expires)"

# ---- negative controls ----
out=$(eb -tls1_2 "$(openssl rand -hex 32)" "$KEID1")
refuse "a wrong Kpsa for that KeID is refused over TLS 1.2" grep -q "authenticated" <<< "$out"
out=$(eb -tls1_3 "$(openssl rand -hex 32)" "$KEID1")
refuse "... and over TLS 1.3" grep -q "authenticated" <<< "$out"
out=$(eb -tls1_2 "$(kpsa_of "$KE" "//other.example.com/cse-eb")" "$KEID1")
refuse "a Kpsa derived for another Enrolee B-ID is refused" grep -q "authenticated" <<< "$out"

# ---- DTLS 1.2 with gnutls-cli ----
session "$LAB/g.out" --send ping -- gnutls-cli --udp -p "$M2M_EB_DTLS_PORT" 127.0.0.1 \
    --pskusername "$KEID1" --pskkey "$KPSA1" --priority "$dtls"
out=$(cat "$LAB/g.out")
check "gnutls-cli --udp completed a DTLS 1.2 handshake with KeID and Kpsa" \
    grep -q "Handshake was completed" <<< "$out"
check "... authenticated by the Enrolee B" grep -q "authenticated $KEID1 until" <<< "$out"
check "... with PSK-AES128-CCM8" \
    wait_log "$LAB/eb.log" "event=handshake-ok ke_id=$KEID1 .*cipher=PSK-AES128-CCM8"

# ---- the MAF cannot have the Kpsa, the Enrolee B no Km ----
session "$LAB/m.out" -- openssl s_client -quiet -no_ign_eof -tls1_2 \
    -connect "127.0.0.1:$M2M_MAF_PORT" -psk "$(km_of "$KE" "$M2M_MAF_ID")" -psk_identity "$KEID1"
refuse "the MAF does not accept the Enrolee B's KeID (with the Km it would derive)" \
    grep -q "authenticated" "$LAB/m.out"
check "... the MEF refused the MAF's fetch for it" \
    wait_log "$LAB/mef.log" "event=fetch-refused ke_id=$KEID1 originator=$M2M_MAF_ID suid=21 status=403 "
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KEID1/22")
check "a MAF asking for the Kpsa (SUID 22) is refused (403: not the target)" \
    grep -q '^403 ' <<< "$reply"
refuse "... and gets no credential" grep -q credential <<< "$reply"
eb_host=${M2M_EB_ID#//}
eb_host=${eb_host%%/*}
reply=$(fetch_as "$eb_host" "$M2M_EB_ID" "/fetchCredentials/$KEID1/21")
check "the Enrolee B asking for a Km (SUID 21) is refused (400)" grep -q '^400 ' <<< "$reply"
reply=$(fetch_as "$eb_host" "$M2M_EB_ID" "/fetchCredentials/$KEID1/22")
check "positive control: its own certificate name gets the Kpsa (200)" grep -q '^200 ' <<< "$reply"
reply=$(fetch_as "other.example.com" "$M2M_EB_ID" "/fetchCredentials/$KEID1/22")
check "a certificate for another host claiming the Enrolee B-ID is refused (403)" \
    grep -q '^403 ' <<< "$reply"
enrolee connect > /dev/null 2> "$LAB/enrolee-a.log"
KEID_A=$(device_ke_id)
reply=$(fetch_as "$eb_host" "$M2M_EB_ID" "/fetchCredentials/$KEID_A/22")
check "the Enrolee B cannot fetch for the MAF's device (403)" grep -q '^403 ' <<< "$reply"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KEID_A/22")
check "... nor the MAF a Kpsa of its own device (400: a MAF fetches SUID 21)" \
    grep -q '^400 ' <<< "$reply"

# ---- m2m-enrolee targets the Enrolee B (Kpsa per 10.3.3), over TLS and DTLS ----
enrolee_b() { on_token enrolee "$M2M_BIN/m2m-enrolee" --config "$M2M_ENROLEE_B_CONFIG" "$@"; }
# The newest KeID of the second device's Kpsa on the device token.
device_b_ke_id() {
    m2mhsm_on enrolee list --json | python3 -c 'import json,sys
r=[x for x in json.load(sys.stdin) if x["kind"]=="kpsa"]
print(r[-1]["identity"] if r else "")'
}
out=$(enrolee_b connect --message hello 2> "$LAB/enrolee-b.log")
KEID2=$(device_b_ke_id)
check "m2m-enrolee (target $M2M_EB_ID) derived a Kpsa" \
    grep -q "event=derived key=kpsa ke_id=$KEID2 target=$M2M_EB_ID " "$LAB/enrolee-b.log"
check "... and was authenticated by the Enrolee B" \
    grep -q "m2m-eb $M2M_EB_ID: authenticated $KEID2 until" <<< "$out"
check "... its message came back" grep -qx hello <<< "$out"
set_json "$M2M_ENROLEE_B_CONFIG" enrolee target_uri "\"dtls://127.0.0.1:$M2M_EB_DTLS_PORT\""
out=$(enrolee_b connect --message hello 2> "$LAB/enrolee-b.log")
check "m2m-enrolee with a dtls:// target was authenticated by the Enrolee B" \
    grep -q "authenticated $KEID2 until" <<< "$out"
check "... over DTLS" grep -q "event=connected ke_id=$KEID2 .*cipher=PSK-AES128-CCM8" "$LAB/enrolee-b.log"
set_json "$M2M_ENROLEE_B_CONFIG" enrolee target_uri "\"tls://127.0.0.1:$M2M_EB_PORT\""

# ---- metrics (the key gauges follow the token at a sweep) ----
sweep_now eb
scrape=$(curl -sS --max-time 10 "http://127.0.0.1:$M2M_EB_METRICS_PORT/metrics")
check "the Enrolee B's key gauge counts its Kpsa" \
    grep -q -E '^m2m_keys\{kind="kpsa"\} [1-9]' <<< "$scrape"
check "... and no Km" grep -q -E '^m2m_keys\{kind="km"\} 0$' <<< "$scrape"
check "the Enrolee B's metrics count its fetches" \
    grep -q -E '^m2m_fetches_total\{result="ok"\} [1-9]' <<< "$scrape"
check "... and its handshakes" grep -q -E '^m2m_handshakes_total\{result="ok"\} [1-9]' <<< "$scrape"

# ---- SIGHUP: a broken file is refused and the service stays; a sound one applies ----
cp "$M2M_EB_CONFIG" "$LAB/eb.json.good"
echo '{"enrolee_b": ' > "$M2M_EB_CONFIG"
reload_now eb
check "a broken eb.json is refused at SIGHUP" grep -q "event=reload-failed" <<< "$(last_reload eb)"
check "... the Enrolee B still runs" alive eb
out=$(eb -tls1_2 "$KPSA1" "$KEID1")
check "... and still serves" grep -q "authenticated $KEID1 until" <<< "$out"
cp "$LAB/eb.json.good" "$M2M_EB_CONFIG"
set_json "$M2M_EB_CONFIG" enrolee_b sweep_interval 86400
reload_now eb
check "a sound eb.json is applied at SIGHUP" grep -q "event=reloaded" <<< "$(last_reload eb)"

# ---- the expiry: the MEF gives its Enrolees 15 s from now on ----
set_enrolment_expiry "$M2M_MEF_CONFIG" 15
reload_now mef
check "the MEF reloaded with a 15 s Enrolment Expiry" grep -q "event=reloaded" <<< "$(last_reload mef)"
set_json "$M2M_ENROLEE_B_CONFIG" enrolee enrolment_expiry '"15"'
enrolee_b bootstrap 2> "$LAB/enrolee-b.log"
KEID3=$(device_b_ke_id)
check "m2m-enrolee re-enrolled for the Enrolee B (new KeID)" test -n "$KEID3" -a "$KEID3" != "$KEID2"
ke_exp3=$(record mef "$KEID3" expires)
enrolee_b connect --hold 120 > "$LAB/hold.out" 2> "$LAB/hold.log" &
holder=$!
E2E_EXTRA_PIDS+=("$holder")
check "the Enrolee B fetched the new Kpsa for the held association" \
    wait_log "$LAB/eb.log" "event=fetched ke_id=$KEID3 "
exp3=$(record eb "$KEID3" expires)
check "... with the lifetime of the 15 s Ke at the MEF (the CR)" \
    test -n "$exp3" -a "$exp3" = "$ke_exp3"
check "the held association was closed by the Enrolee B at the Kpsa's expiry" \
    wait_log "$LAB/eb.log" "event=closed-expired ke_id=$KEID3 "
rc=0
wait "$holder" || rc=$?
check "... which the device saw (closed-by-target)" \
    test "$rc" = 1 -a -n "$(grep "event=closed-by-target ke_id=$KEID3" "$LAB/hold.log")"
check "that Kpsa has expired" wait_past "$exp3"
out=$(eb -tls1_2 "$(openssl rand -hex 32)" "$KEID3")
refuse "after the expiry the Enrolee B refuses the KeID" grep -q "authenticated" <<< "$out"
check "... refused as expired, and erased the Enrolee's credentials" \
    wait_log "$LAB/eb.log" "event=rejected-expired ke_id=$KEID3 enrolee_id=$M2M_ENROLEE_B_ID erased="
check "... the eb token no longer holds that Kpsa" test -z "$(record eb "$KEID3" kind)"
check "... nor the device's earlier ones (all credentials of the Enrolee)" \
    test -z "$(record eb "$KEID1" kind)$(record eb "$KEID2" kind)"

# By sweep: a fresh enrolment, served once, then expired and swept.
bootstrap_b
KEID4=$KEID
out=$(eb -tls1_2 "$KPSA" "$KEID4")
check "a fresh 15 s enrolment is served" grep -q "authenticated $KEID4 until" <<< "$out"
exp4=$(record eb "$KEID4" expires)
check "... its Kpsa expires" wait_past "$exp4"
sweep_now eb
check "the sweep erased the expired Kpsa" \
    wait_log "$LAB/eb.log" "event=erased records=[1-9][0-9]* reason=expired at=sweep"
check "... it is gone from the eb token" test -z "$(record eb "$KEID4" kind)"
out=$(eb -tls1_2 "$KPSA" "$KEID4")
refuse "... and its KeID is refused (the MEF erased the expired Ke too)" \
    grep -q "authenticated" <<< "$out"
check "... the MEF said Gone or unknown" \
    wait_log "$LAB/eb.log" "event=fetch-failed ke_id=$KEID4 status=(404|410) "

# The device re-provisions by itself once its Kpsa has expired.
set_json "$M2M_ENROLEE_B_CONFIG" enrolee enrolment_expiry '"600"'
set_enrolment_expiry "$M2M_MEF_CONFIG" 600
reload_now mef
out=$(enrolee_b connect 2> "$LAB/enrolee-b.log")
KEID5=$(device_b_ke_id)
check "m2m-enrolee, its Kpsa expired, re-provisioned and was authenticated again" \
    grep -q "authenticated $KEID5 until" <<< "$out"
check "... under a new KeID" test -n "$KEID5" -a "$KEID5" != "$KEID3"
finish
