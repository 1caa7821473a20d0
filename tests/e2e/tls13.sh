#!/usr/bin/env bash
# The TLS 1.3 option (TS-0003 10.2: not in this release, supported as an option) beside TLS 1.2:
# with `lab.sh init --tls13` the MEF's TLS bootstrap port and the MAF's port serve TLS 1.3
# external PSK (TLS_AES_128_GCM_SHA256) and TLS 1.2 with the suite TS-0003 mandates
# (PSK-AES128-CBC-SHA256), on one port each. openssl s_client -tls1_2 and -tls1_3 both enrol
# at the MEF and are served by the MAF with the KeID and the Km computed by openssl mac, the
# same-connection fetch working under either version; the device connects with tls:// (TLS
# 1.2) and with tls13:// (TLS 1.3) URIs.
. "$(dirname "$0")/lib.sh"
e2e_lab tls13 --expiry 600 --tls13
kpm=$(tr -d ' \n' < "$M2M_KPM_HEX_FILE")

check "the MEF serves TLS 1.2 and TLS 1.3 on its bootstrap port" \
    wait_log "$LAB/mef.log" "event=listening service=bootstrap transport=tls1.2\+tls1.3 address=127.0.0.1:$M2M_MEF_PORT"
check "the MAF serves TLS 1.2 and TLS 1.3 on its port" \
    wait_log "$LAB/maf.log" "event=listening service=enrolees transport=tls1.2\+tls1.3 address=127.0.0.1:$M2M_MAF_PORT"

# ---- the device: tls:// URIs (the lab's) are TLS 1.2, tls13:// ones TLS 1.3 ----
out=$(enrolee connect 2> "$LAB/enrolee.log")
KE1=$(device_ke_id)
check "device (tls://) authenticated on its first connection" grep -q "authenticated $KE1 until" <<< "$out"
check "... enrolled at the MEF over tls://" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KE1 .*transport=tls"
check "... and served by the MAF over TLS 1.2 with PSK-AES128-CBC-SHA256" \
    wait_log "$LAB/maf.log" "event=handshake-ok ke_id=$KE1 .*cipher=PSK-AES128-CBC-SHA256 "
set_json "$M2M_ENROLEE_CONFIG" enrolee mef_uri "\"tls13://127.0.0.1:$M2M_MEF_PORT\""
set_json "$M2M_ENROLEE_CONFIG" enrolee target_uri "\"tls13://127.0.0.1:$M2M_MAF_PORT\""
enrolee bootstrap 2> "$LAB/enrolee.log"
out=$(enrolee connect 2> "$LAB/enrolee.log")
KE2=$(device_ke_id)
check "device (tls13://) enrolled again, over TLS 1.3" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KE2 "
check "... a new KeID" test "$KE2" != "$KE1"
check "... authenticated on its first connection over TLS 1.3 (fetch while waiting)" \
    grep -q "authenticated $KE2 until" <<< "$out"
check "... the MAF fetched that Km" wait_log "$LAB/maf.log" "event=fetched ke_id=$KE2 "
check "... and logged the TLS 1.3 handshake with the KeID" \
    wait_log "$LAB/maf.log" "event=handshake-ok ke_id=$KE2 .*cipher=TLS_AES_128_GCM_SHA256 "

# ---- openssl s_client, both versions, at the MEF's one bootstrap port ----
# bootstrap VERSION-OPTION...: s_client enrols; sets KEID, KM and BOOT (its output).
bootstrap() {
    BOOT=$(openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" "$@" -psk "$kpm" \
        -psk_identity "$M2M_KPM_ID" -keymatexport EXPORTER-oneM2M-Bootstrap \
        -keymatexportlen 48 < /dev/null 2>&1 || true)
    local x
    x=$(awk '/Keying material:/{print tolower($3)}' <<< "$BOOT")
    KEID="${x:0:32}"
    KEID="${KEID^^}@$M2M_MEF_FQDN"
    KM=$(km_of "${x:32:64}" "$M2M_MAF_ID")
}
bootstrap -tls1_2 -cipher PSK-AES128-CBC-SHA256
KEID12=$KEID KM12=$KM
check "s_client -tls1_2 enrolled over TLS 1.2" grep -q -E "Protocol +: TLSv1.2$" <<< "$BOOT"
check "... with PSK-AES128-CBC-SHA256" grep -q -E "Cipher +: PSK-AES128-CBC-SHA256$" <<< "$BOOT"
check "... the MEF enrolled the KeID it computed" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KEID12 "

# maf VERSION-OPTION PSK IDENTITY: s_client at the MAF's one port → what the MAF sent back.
# TLS 1.2 offers only the suite TS-0003 mandates.
maf() {
    local suite=()
    if [ "$1" = -tls1_2 ]; then suite=(-cipher PSK-AES128-CBC-SHA256); fi
    session "$LAB/s.out" -- openssl s_client -quiet -no_ign_eof "$1" "${suite[@]}" \
        -connect "127.0.0.1:$M2M_MAF_PORT" -psk "$2" -psk_identity "$3"
    cat "$LAB/s.out"
}
# handshakes KEID CIPHER: how many the MAF completed with that KeID and cipher.
handshakes() { count_log "$LAB/maf.log" "event=handshake-ok ke_id=$1 .*cipher=$2 "; }

out=$(maf -tls1_2 "$KM12" "$KEID12")
check "s_client -tls1_2 authenticated at the MAF (first contact: fetched meanwhile)" \
    grep -q "authenticated $KEID12 until" <<< "$out"
check "... with PSK-AES128-CBC-SHA256" wait_log "$LAB/maf.log" \
    "event=handshake-ok ke_id=$KEID12 .*cipher=PSK-AES128-CBC-SHA256 "
out=$(maf -tls1_3 "$KM12" "$KEID12")
check "s_client -tls1_3 authenticated at the same port with the same KeID and Km" \
    grep -q "authenticated $KEID12 until" <<< "$out"
check "... over TLS 1.3" wait_log "$LAB/maf.log" \
    "event=handshake-ok ke_id=$KEID12 .*cipher=TLS_AES_128_GCM_SHA256 "

bootstrap -tls1_3
KEID13=$KEID KM13=$KM
check "s_client -tls1_3 enrolled at the same bootstrap port over TLS 1.3" \
    grep -q -E "(New|Reused), TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256" <<< "$BOOT"
check "... the MEF enrolled the KeID it computed" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KEID13 "
out=$(maf -tls1_3 "$KM13" "$KEID13")
check "s_client -tls1_3 authenticated at the MAF (first contact: fetched meanwhile)" \
    grep -q "authenticated $KEID13 until" <<< "$out"
check "... over TLS 1.3" wait_log "$LAB/maf.log" \
    "event=handshake-ok ke_id=$KEID13 .*cipher=TLS_AES_128_GCM_SHA256 "
check "... the MAF fetched that Km once" \
    test "$(count_log "$LAB/maf.log" "event=fetched ke_id=$KEID13 ")" = 1
out=$(maf -tls1_2 "$KM13" "$KEID13")
check "s_client -tls1_2 authenticated at the same port with that KeID and Km" \
    grep -q "authenticated $KEID13 until" <<< "$out"
check "... with PSK-AES128-CBC-SHA256" wait_log "$LAB/maf.log" \
    "event=handshake-ok ke_id=$KEID13 .*cipher=PSK-AES128-CBC-SHA256 "

# ---- negative controls: a wrong Km is refused under either version ----
before12=$(handshakes "$KEID13" PSK-AES128-CBC-SHA256)
before13=$(handshakes "$KEID13" TLS_AES_128_GCM_SHA256)
out=$(maf -tls1_3 "$(openssl rand -hex 32)" "$KEID13")
refuse "negative control: a wrong Km is refused over TLS 1.3" grep -q "authenticated" <<< "$out"
out=$(maf -tls1_2 "$(openssl rand -hex 32)" "$KEID13")
refuse "negative control: a wrong Km is refused over TLS 1.2" grep -q "authenticated" <<< "$out"
check "... and the MAF completed neither" \
    test "$(handshakes "$KEID13" PSK-AES128-CBC-SHA256)/$(handshakes "$KEID13" TLS_AES_128_GCM_SHA256)" = "$before12/$before13"
finish
