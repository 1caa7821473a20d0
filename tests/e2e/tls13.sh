#!/usr/bin/env bash
# The TLS 1.3 option (TS-0003 10.2: not in this release, supported as an option): MEF and MAF
# with "tls13": true; the device bootstraps (mef_uri tls13://) and connects (target_uri
# tls13://) over TLS 1.3, with the same-connection fetch; openssl s_client -tls1_3 enrols and
# is served with the KeID and the Km computed by openssl mac.
. "$(dirname "$0")/lib.sh"
e2e_lab_init tls13 --expiry 600
set_json "$M2M_MAF_CONFIG" maf tls13 true
set_json "$M2M_MEF_CONFIG" mef tls13 true
set_json "$M2M_ENROLEE_CONFIG" enrolee mef_uri "\"tls13://127.0.0.1:$M2M_MEF_PORT\""
set_json "$M2M_ENROLEE_CONFIG" enrolee target_uri "\"tls13://127.0.0.1:$M2M_MAF_PORT\""
bash "$LABSH" start "$LAB" > /dev/null

out=$(enrolee connect 2> "$LAB/enrolee.log")
KE1=$(device_ke_id)
check "device authenticated over TLS 1.3 on its first connection (fetch while waiting)" \
    grep -q "authenticated $KE1 until" <<< "$out"
check "MEF enrolled the device over TLS 1.3" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KE1 "
check "MAF logged the TLS 1.3 handshake with the KeID" \
    wait_log "$LAB/maf.log" "event=handshake-ok ke_id=$KE1 .*cipher=TLS_AES_128_GCM_SHA256"

kpm=$(tr -d ' \n' < "$M2M_KPM_HEX_FILE")
exported=$(openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" -tls1_3 -psk "$kpm" \
    -psk_identity "$M2M_KPM_ID" -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 \
    < /dev/null 2>&1 | awk '/Keying material:/{print $3}' || true)
x=${exported,,}
KEID="${x:0:32}"
KEID="${KEID^^}@$M2M_MEF_FQDN"
km=$(km_of "${x:32:64}" "$M2M_MAF_ID")
session "$LAB/s.out" -- openssl s_client -quiet -no_ign_eof -tls1_3 \
    -connect "127.0.0.1:$M2M_MAF_PORT" -psk "$km" -psk_identity "$KEID"
out=$(cat "$LAB/s.out")
check "openssl s_client -tls1_3 authenticated with KeID and openssl-mac Km" \
    grep -q "authenticated $KEID until" <<< "$out"
session "$LAB/s.out" -- openssl s_client -quiet -no_ign_eof -tls1_3 \
    -connect "127.0.0.1:$M2M_MAF_PORT" -psk "$(openssl rand -hex 32)" -psk_identity "$KEID"
out=$(cat "$LAB/s.out")
refuse "negative control: a wrong Km is refused over TLS 1.3" grep -q "authenticated" <<< "$out"
finish
