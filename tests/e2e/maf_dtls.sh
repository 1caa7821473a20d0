#!/usr/bin/env bash
# The MAF over DTLS 1.2 (PSK-AES128-CCM8, issue 11): `gnutls-cli --udp` completes a
# handshake with a KeID and the Km `openssl mac` computes from an `openssl s_client`
# bootstrap, while the MAF fetches that Km from the MEF; a wrong Km never completes;
# m2m-enrolee reaches the MAF with a dtls:// target; and the expiry rules hold over DTLS: an
# open association is closed at its key's expiry, and the expired key is then refused and
# erased, after which the device re-provisions by itself.
. "$(dirname "$0")/lib.sh"
e2e_lab maf_dtls --expiry 600
kpm=$(tr -d ' \n' < "$M2M_KPM_HEX_FILE")
dtls="NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM-8:-MAC-ALL:+AEAD"

check "the MAF serves DTLS on M2M_MAF_DTLS_PORT" \
    wait_log "$LAB/maf.log" "event=listening service=enrolees transport=dtls1.2 address=127.0.0.1:$M2M_MAF_DTLS_PORT"

# ---- a device made of stock tools: openssl s_client enrols, gnutls-cli --udp authenticates ----
exported=$(openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" -tls1_2 -psk "$kpm" \
    -psk_identity "$M2M_KPM_ID" -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 \
    < /dev/null 2>&1 | awk '/Keying material:/{print $3}' || true)
x=${exported,,}
KEID="${x:0:32}"
KEID="${KEID^^}@$M2M_MEF_FQDN"
km=$(km_of "${x:32:64}" "$M2M_MAF_ID")
check "openssl s_client enrolled at the MEF" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KEID "
refuse "the MAF does not hold that Km yet" grep -q "ke_id=$KEID" "$LAB/maf.log"

session "$LAB/g.out" --send ping -- gnutls-cli --udp -p "$M2M_MAF_DTLS_PORT" 127.0.0.1 \
    --pskusername "$KEID" --pskkey "$km" --priority "$dtls"
out=$(cat "$LAB/g.out")
check "gnutls-cli --udp completed the DTLS handshake with KeID and the openssl-mac Km" \
    grep -q "Handshake was completed" <<< "$out"
check "... was authenticated by the MAF" grep -q "authenticated $KEID until" <<< "$out"
check "... and the association carries data" grep -qx ping <<< "$out"
check "the MAF fetched the Km from the MEF for that first handshake" \
    wait_log "$LAB/maf.log" "event=fetched ke_id=$KEID enrolee_id=$M2M_ENROLEE_ID"
check "... and completed it over DTLS with PSK-AES128-CCM8" \
    wait_log "$LAB/maf.log" "event=handshake-ok ke_id=$KEID .*cipher=PSK-AES128-CCM8"

# A wrong Km: DTLS drops the records it cannot authenticate (RFC 6347 4.1.2.7), so nothing
# ever completes; the MAF ends the attempt at its handshake timeout, and the client is
# stopped once the MAF has logged that.
ok_before=$(count_log "$LAB/maf.log" "event=handshake-ok ")
failed_before=$(count_log "$LAB/maf.log" "event=handshake-failed ke_id=$KEID ")
: > "$LAB/bad.out"
gnutls-cli --udp -p "$M2M_MAF_DTLS_PORT" 127.0.0.1 --pskusername "$KEID" \
    --pskkey "$(openssl rand -hex 32)" --priority "$dtls" < /dev/null > "$LAB/bad.out" 2>&1 &
bad=$!
E2E_EXTRA_PIDS+=("$bad")
check "negative control: the MAF gave up the handshake with a wrong Km" \
    wait_count "$LAB/maf.log" "event=handshake-failed ke_id=$KEID " $((failed_before + 1)) 60
kill "$bad" 2> /dev/null || true
wait "$bad" 2> /dev/null || true
refuse "... which gnutls-cli never completed" grep -q -E "Handshake was completed|authenticated" "$LAB/bad.out"
check "... and the MAF never accepted" \
    test "$(count_log "$LAB/maf.log" "event=handshake-ok ")" = "$ok_before"

# ---- m2m-enrolee with a dtls:// target ----
set_json "$M2M_ENROLEE_CONFIG" enrolee target_uri "\"dtls://127.0.0.1:$M2M_MAF_DTLS_PORT\""
out=$(enrolee connect --message hello 2> "$LAB/enrolee.log")
KE1=$(device_ke_id)
check "m2m-enrolee (dtls:// target) was authenticated on its first connection" \
    grep -q "authenticated $KE1 until" <<< "$out"
check "... and its message came back" grep -qx hello <<< "$out"
check "... over DTLS" grep -q "event=connected ke_id=$KE1 .*cipher=PSK-AES128-CCM8" "$LAB/enrolee.log"
check "the MAF fetched that Km too" wait_log "$LAB/maf.log" "event=fetched ke_id=$KE1 "

# ---- expiry over DTLS: closed at the instant, then refused and erased ----
# The MAF keeps a fetched Km 15 s from now on (the device's Ke lives 600 s).
bash "$LABSH" stop "$LAB" > /dev/null
set_json "$M2M_MAF_CONFIG" maf max_lifetime 15
set_json "$M2M_MAF_CONFIG" maf sweep_interval 86400
bash "$LABSH" start "$LAB" > /dev/null
enrolee bootstrap 2> "$LAB/enrolee.log"
KE2=$(device_ke_id)
check "the device re-enrolled (new KeID)" test -n "$KE2" -a "$KE2" != "$KE1"
enrolee connect --hold 120 > "$LAB/hold.out" 2> "$LAB/hold.log" &
holder=$!
E2E_EXTRA_PIDS+=("$holder")
check "the held DTLS association was closed by the MAF at the key's expiry" \
    wait_log "$LAB/maf.log" "event=closed-expired ke_id=$KE2 "
rc=0
wait "$holder" || rc=$?
check "... which the device saw (closed-by-target, exit status 1)" \
    test "$rc" = 1 -a -n "$(grep "event=closed-by-target ke_id=$KE2" "$LAB/hold.log")"
maf_exp=$(m2mhsm_on maf list --json | python3 -c 'import json,sys
print("".join(r["expires"] for r in json.load(sys.stdin) if r["identity"]==sys.argv[1]))' "$KE2")
check "the MAF's token holds that Km with its short expiry" test -n "$maf_exp"
check "that Km has expired" wait_past "$maf_exp"
out=$(enrolee connect 2> "$LAB/enrolee.log")
KE3=$(device_ke_id)
# The CR erases all of the Enrolee's credentials: the three Km it held for this Enrolee-ID
# (the s_client's, KE1's and KE2's).
check "the MAF refused the expired Km over DTLS and erased the Enrolee's three credentials" \
    wait_log "$LAB/maf.log" "event=rejected-expired ke_id=$KE2 .*erased=3"
check "... the device saw the refusal" grep -q "event=rejected-by-target ke_id=$KE2" "$LAB/enrolee.log"
check "... re-provisioned because of it" \
    grep -q "event=provisioning .*reason=rejected-by-target" "$LAB/enrolee.log"
check "... and was authenticated over DTLS with a new KeID" \
    grep -q "authenticated $KE3 until" <<< "$out"
check "KeID changed" test "$KE3" != "$KE2"
held=$(m2mhsm_on maf list --json)
refuse "the MAF's token no longer holds the expired Km or the Enrolee's others" \
    grep -q -E "$KE2|$KE1|$KEID" <<< "$held"
check "... but the new one" grep -q "$KE3" <<< "$held"
finish
