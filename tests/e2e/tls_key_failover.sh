#!/usr/bin/env bash
# Failover of a server's TLS key token (the "tls_key_pkcs11" section: a SoftHSM token beside
# a key store on a kind without a usable EC key, docs/tokens.md) is logged as the store's is:
# event=token_lost and event=token_back, naming that token and its section. The MEF's TLS key
# token is reached through the fault module, which fails the MEF's first handshake signature
# (C_Sign #2; #1 is the key check at start) with CKR_DEVICE_ERROR; the MAF's Km fetch then
# goes through an outage of that token. Runs once, on a softokn lab (whose servers' TLS keys
# are on such tokens), whatever M2MHSM_TOKEN_KIND says.
. "$(dirname "$0")/lib.sh"
FAULT="$M2M_BUILD/tests/fault/libm2mfault.so"
M2MHSM_TOKEN_KIND=softokn e2e_lab_init tlskeyfailover --expiry 600

side=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tls_key_pkcs11"]["module"])' \
    "$M2M_MEF_CONFIG")
side_uri=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tls_key_pkcs11"]["token"])' \
    "$M2M_MEF_CONFIG")
check "the MEF's TLS key is on a token of its own (tls_key_pkcs11: $side_uri)" test -n "$side_uri"
set_json "$M2M_MEF_CONFIG" tls_key_pkcs11 module "\"$FAULT\""
# Only the MEF's tls_key_pkcs11 token loads the fault module; everything else ignores these.
export M2M_FAULT_MODULE=$side M2M_FAULT_FUNC=C_Sign M2M_FAULT_K=2 \
    M2M_FAULT_ACTION=CKR_DEVICE_ERROR M2M_FAULT_REPORT="$LAB/fault.report"
bash "$LABSH" start "$LAB" > /dev/null

# A device enrolled by openssl s_client, then at the MAF: the MAF fetches its Km from the MEF
# over mutual TLS, for which the MEF signs with the key on that token.
kpm=$(tr -d ' \n' < "$M2M_KPM_HEX_FILE")
out=$(openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
    -psk "$kpm" -psk_identity "$M2M_KPM_ID" -servername "$M2M_MEF_FQDN" \
    -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 < /dev/null 2>&1 || true)
x=$(awk '/Keying material:/{print $3}' <<< "$out")
x=${x,,}
check "openssl s_client enrolled at the MEF" test "${#x}" = 96
keid="${x:0:32}"
keid="${keid^^}@$M2M_MEF_FQDN"
session "$LAB/s.out" --send ping -- openssl s_client -quiet -no_ign_eof \
    -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_2 -psk "$(km_of "${x:32:64}" "$M2M_MAF_ID")" \
    -psk_identity "$keid" -servername "$M2M_MAF_ID"
# The log quotes a value holding "=" and writes that as \x3d; as a regex, backslash and dots
# escaped.
re_uri=${side_uri//=/\\x3d}
re_uri=${re_uri//\\/\\\\}
re_uri="\"${re_uri//./\\.}\""
check "the MEF logged token_lost naming its TLS key token, its section and the CKR" wait_log \
    "$LAB/mef.log" "event=token_lost token=$re_uri section=tls_key_pkcs11 op=[^ ]+ ckr=CKR_DEVICE_ERROR"
check "... and token_back for it, with how long it was down" wait_log \
    "$LAB/mef.log" "event=token_back token=$re_uri section=tls_key_pkcs11 ckr=CKR_DEVICE_ERROR down_ms=[0-9]+"
echo "# $(grep -h "event=token_lost" "$LAB/mef.log" | head -1)"
echo "# $(grep -h "event=token_back" "$LAB/mef.log" | head -1)"
refuse "the store's own token was not reported lost" grep -q "event=token_lost .*section=pkcs11 " \
    "$LAB/mef.log"
check "the MAF still fetched Km through the outage (the signature was made again)" \
    wait_log "$LAB/maf.log" "event=fetched ke_id=$keid "
check "... and authenticated the device" grep -q "authenticated $keid until" "$LAB/s.out"
bash "$LABSH" stop "$LAB" > /dev/null
check "the fault module failed the MEF's C_Sign #2" \
    grep -q " acted C_Sign 2 CKR_DEVICE_ERROR" "$LAB/fault.report"
finish
