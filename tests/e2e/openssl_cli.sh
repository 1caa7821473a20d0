#!/usr/bin/env bash
# The whole protocol reproduced with peers we did not write, against m2m-mef and m2m-maf:
# a device enrolled by plain `openssl s_client` (exporter, 10.3.1), its KeID (10.3.4) and
# Km (`openssl mac`, 10.3.2) computed on the command line, and `openssl s_client` accepted by
# the MAF with them; the DTLS bootstrap with `gnutls-cli --udp`, whose Km then works with
# gnutls-cli at the MAF; re-enrolment replacing the previous Ke at the MEF; m2m-enrolee
# bootstrapping over DTLS; and an Enrolee B target fetching the Kpsa (SUID 22, 10.3.3).
. "$(dirname "$0")/lib.sh"
e2e_lab cli --expiry 600
kpm=$(tr -d ' \n' < "$M2M_KPM_HEX_FILE")

# export HEX → KEID and KE (upper-case hex of the first 16 bytes "@" MEF-FQDN; last 32 bytes).
split_export() {
    local x=${1,,}
    KEID="${x:0:32}"
    KEID="${KEID^^}@$M2M_MEF_FQDN"
    KE=${x:32:64}
}

# ---- openssl s_client enrols at the MEF (TLS 1.2) ----
out=$(openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
    -psk "$kpm" -psk_identity "$M2M_KPM_ID" -servername "$M2M_MEF_FQDN" \
    -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 < /dev/null 2>&1 || true)
exported=$(awk '/Keying material:/{print $3}' <<< "$out")
check "openssl s_client completed the bootstrap handshake and exported 48 bytes" \
    test "${#exported}" = 96
split_export "$exported"
KEID_SSL=$KEID
check "the MEF enrolled the KeID computed on the command line" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KEID_SSL .*transport=tls"
km=$(km_of "$KE" "$M2M_MAF_ID")
check "openssl mac computed a 32-byte Km" test "${#km}" = 64

maf_session() { # PSK-HEX IDENTITY → what the MAF sent back
    session "$LAB/s.out" --send ping -- openssl s_client -quiet -no_ign_eof \
        -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_2 -psk "$1" -psk_identity "$2" \
        -servername "$M2M_MAF_ID"
    cat "$LAB/s.out"
}
out=$(maf_session "$km" "$KEID_SSL")
check "openssl s_client authenticated at the MAF with KeID and the openssl-mac Km" \
    grep -q "authenticated $KEID_SSL until" <<< "$out"
check "... and the association carries data" grep -qx ping <<< "$out"
check "the MAF fetched that Km from the MEF for it" \
    wait_log "$LAB/maf.log" "event=fetched ke_id=$KEID_SSL enrolee_id=$M2M_ENROLEE_ID"
out=$(maf_session "$(openssl rand -hex 32)" "$KEID_SSL")
refuse "negative control: a wrong Km for that KeID is refused" \
    grep -q "authenticated" <<< "$out"

# ---- gnutls-cli enrols over DTLS 1.2; re-enrolment replaces the s_client's Ke ----
dtls="NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM-8:-MAC-ALL:+AEAD"
out=$(timeout 20 gnutls-cli --udp -p "$M2M_MEF_DTLS_PORT" 127.0.0.1 --pskusername "$M2M_KPM_ID" \
    --pskkey "$kpm" --priority "$dtls" --keymatexport EXPORTER-oneM2M-Bootstrap \
    --keymatexportsize 48 < /dev/null 2>&1 || true)
check "gnutls-cli --udp completed the DTLS bootstrap handshake" grep -q "Handshake was completed" <<< "$out"
exported=$(grep -i "Key material" <<< "$out" | grep -o -E '[0-9A-Fa-f]{96}' | head -1)
split_export "${exported:-}"
KEID_DTLS=$KEID
check "the MEF enrolled it over DTLS under the KeID gnutls exported" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KEID_DTLS .*transport=dtls"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KEID_SSL/21")
check "re-enrolment erased the previous KeID at the MEF (404)" grep -q '^404 ' <<< "$reply"
tls12="NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA256"
session "$LAB/g.out" -- gnutls-cli -p "$M2M_MAF_PORT" 127.0.0.1 \
    --pskusername "$KEID_DTLS" --pskkey "$(km_of "$KE" "$M2M_MAF_ID")" --priority "$tls12"
out=$(cat "$LAB/g.out")
check "gnutls-cli authenticated at the MAF with the DTLS-enrolled KeID and its Km" \
    grep -q "authenticated $KEID_DTLS until" <<< "$out"

# ---- m2m-enrolee bootstraps over DTLS ----
python3 - "$M2M_ENROLEE_CONFIG" "$LAB/enrolee-dtls.json" "$M2M_MEF_DTLS_PORT" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["enrolee"]["mef_uri"] = "dtls://127.0.0.1:%s" % sys.argv[3]
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
out=$(on_token enrolee "$M2M_BIN/m2m-enrolee" --config "$LAB/enrolee-dtls.json" connect 2> "$LAB/enrolee.log")
KEID_DEV=$(device_ke_id)
check "m2m-enrolee enrolled over DTLS" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KEID_DEV .*transport=dtls"
check "... and was authenticated by the MAF" grep -q "authenticated $KEID_DEV until" <<< "$out"

# ---- an Enrolee B target: Kpsa (SUID 22, clause 10.3.3) ----
B=//enroleeb.example.com/cse1
m2mhsm_on mef enrolee configure --kpm-id "$M2M_KPM_ID" --target-id "$B" \
    --enrolee-id "$M2M_ENROLEE_ID" --enrolment-expiry 600 > /dev/null
exported=$(openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" -tls1_2 -psk "$kpm" \
    -psk_identity "$M2M_KPM_ID" -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 \
    < /dev/null 2>&1 | awk '/Keying material:/{print $3}' || true)
split_export "$exported"
check "the MEF enrolled for the Enrolee B target configured live with the admin CLI" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KEID .*target=$B "
reply=$(fetch_as enroleeb.example.com "$B" "/fetchCredentials/$KEID/22")
kpsa=$(printf 'oneM2M Enrolment Key to Provisioned Secure Connection Key derivation%s' "$B" |
    openssl mac -digest SHA256 -macopt "hexkey:$KE" HMAC | tr 'A-F' 'a-f')
got=$(sed 's/^200 //' <<< "$reply" | python3 -c 'import base64,json,sys; print(base64.b64decode(json.load(sys.stdin)["credential"]).hex())' 2> /dev/null || true)
check "Enrolee B (certificate for its host) gets 200 and the Kpsa openssl mac computes" \
    test -n "$got" -a "$got" = "$kpsa"
reply=$(fetch_as enroleeb.example.com "$B" "/fetchCredentials/$KEID/21")
check "... but not a Km (SUID 21 is for a MAF)" grep -q '^400 ' <<< "$reply"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KEID/21")
check "... and the MAF is no longer this Enrolee's target (403)" grep -q '^403 ' <<< "$reply"
finish
