#!/usr/bin/env bash
# The `custom` token kind (hsm-config/kinds/custom.sh), as a new HSM's user meets it: tokens
# made beforehand with tools we did not write (NSS softokn databases by certutil standing in
# for a vendor's tokens), named to the lab only through the M2M_CUSTOM_* variables. Without
# M2M_CUSTOM_ACCEPT_EXTRACTABLE the services refuse those tokens (softokn fails the self-test:
# event=token-lets-keys-out); with M2M_CUSTOM_ACCEPT_EXTRACTABLE=1 they start, warn, and a
# device enrolled by a stock `openssl s_client` is authenticated by the MAF with the Km
# `openssl mac` computes. Runs once, whatever M2MHSM_TOKEN_KIND says.
. "$(dirname "$0")/lib.sh"
command -v certutil > /dev/null || { echo "not ok - certutil (libnss3-tools) is missing"; exit 1; }

SOFTOKN=/usr/lib/x86_64-linux-gnu/libsoftokn3.so
VENDOR=$(mktemp -d "${TMPDIR:-/tmp}/m2m-e2e-vendor.XXXXXX")
# lab_init NAME [OPTIONS]: e2e_lab_init, whose cleanup then also removes the vendor's tokens.
lab_init() {
    e2e_lab_init "$@"
    trap 'e2e_cleanup; rm -rf "$VENDOR"' EXIT
}
trap 'rm -rf "$VENDOR"' EXIT

# vendor_tokens NAME: four freshly made softokn databases (one per lab token, as the kind asks),
# with their PINs, exported as the custom kind's variables.
vendor_tokens() {
    local t T dir
    export M2M_CUSTOM_MODULE=$SOFTOKN
    for t in mef maf enrolee eb; do
        T=${t^^}
        dir="$VENDOR/$1-$t"
        mkdir -p "$dir"
        openssl rand -hex 12 > "$dir.pin"
        certutil -N -d "sql:$dir" -f "$dir.pin" > /dev/null
        export "M2M_CUSTOM_${T}_TOKEN=pkcs11:token=vendor-$t"
        export "M2M_CUSTOM_${T}_PIN_FILE=$dir.pin"
        export "M2M_CUSTOM_${T}_INIT_ARGS=configdir='sql:$dir' certPrefix='' keyPrefix='' secmod='secmod.db' flags= dbTokenDescription='vendor-$t'"
    done
}
export M2MHSM_TOKEN_KIND=custom

# ---- a typo in the option is refused, not taken for "no" ----
vendor_tokens typo
rc=0
M2M_CUSTOM_ACCEPT_EXTRACTABLE=yes bash "$LABSH" init "$VENDOR/typo-lab" --build "$M2M_BUILD" \
    --token-kind custom > "$VENDOR/typo.log" 2>&1 || rc=$?
check "lab init refuses M2M_CUSTOM_ACCEPT_EXTRACTABLE=yes" test "$rc" -ne 0
check "... naming the variable" grep -q "M2M_CUSTOM_ACCEPT_EXTRACTABLE is 'yes'" "$VENDOR/typo.log"

# ---- without M2M_CUSTOM_ACCEPT_EXTRACTABLE: the services refuse the tokens ----
vendor_tokens refuse
unset M2M_CUSTOM_ACCEPT_EXTRACTABLE
lab_init custom-refuse
check "lab.env names the vendor's module" test "$M2M_MODULE" = "$SOFTOKN"
check "the enrolee token is the vendor's, reached with its init args" \
    test "$M2M_ENROLEE_TOKEN" = pkcs11:token=vendor-enrolee -a -n "$M2M_ENROLEE_INIT_ARGS"
refuse "the MEF configuration does not accept extractable keys" \
    grep -q accept_extractable_keys "$M2M_MEF_CONFIG"
for s in mef maf eb; do
    rc=0
    "$M2M_BIN/m2m-$s" --config "$LAB/$s.json" > "$LAB/$s.out" 2> "$LAB/$s.err" || rc=$?
    check "m2m-$s refuses to start on its softokn token (exit status 1)" test "$rc" = 1
    check "... with event=token-lets-keys-out naming the leaks" grep -qE \
        "level=error prog=m2m-$s event=token-lets-keys-out non_extractable_enforced=false leaks=\"[a-z_,]*copy_extractable" \
        "$LAB/$s.err"
done
echo "# $(grep -h event=token-lets-keys-out "$LAB/mef.err")"
bash "$LABSH" stop "$LAB" > /dev/null 2>&1 || true
bash "$LABSH" clean "$LAB" > /dev/null 2>&1 || rm -rf "$LAB"

# ---- with M2M_CUSTOM_ACCEPT_EXTRACTABLE=1: they start, warn, and serve a stock peer ----
vendor_tokens accept
export M2M_CUSTOM_ACCEPT_EXTRACTABLE=1
lab_init custom-accept --expiry 600
bash "$LABSH" start "$LAB" > /dev/null
check "every service configuration accepts extractable keys" \
    grep -q '"accept_extractable_keys": true' "$M2M_MEF_CONFIG" "$M2M_MAF_CONFIG" "$M2M_EB_CONFIG"
for s in mef maf eb; do
    check "m2m-$s started on its softokn token and warned" \
        wait_log "$LAB/$s.log" "level=warn prog=m2m-$s event=token-lets-keys-out-accepted .*accept_extractable_keys=true"
done

kpm=$(tr -d ' \n' < "$M2M_KPM_HEX_FILE")
out=$(openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
    -psk "$kpm" -psk_identity "$M2M_KPM_ID" -servername "$M2M_MEF_FQDN" \
    -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 < /dev/null 2>&1 || true)
exported=$(awk '/Keying material:/{print $3}' <<< "$out")
check "openssl s_client enrolled at the MEF (48 bytes exported)" test "${#exported}" = 96
x=${exported,,}
keid="${x:0:32}"
keid="${keid^^}@$M2M_MEF_FQDN"
check "the MEF enrolled that KeID on the vendor's token" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$keid "
km=$(km_of "${x:32:64}" "$M2M_MAF_ID")
maf_session() { # PSK-HEX → what the MAF sent back to openssl s_client
    session "$LAB/s.out" --send ping -- openssl s_client -quiet -no_ign_eof \
        -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_2 -psk "$1" -psk_identity "$keid" \
        -servername "$M2M_MAF_ID"
    cat "$LAB/s.out"
}
out=$(maf_session "$km")
check "the MAF authenticated openssl s_client with the openssl-mac Km" \
    grep -q "authenticated $keid until" <<< "$out"
check "... after fetching Km from the MEF" \
    wait_log "$LAB/maf.log" "event=fetched ke_id=$keid "
out=$(maf_session "$(openssl rand -hex 32)")
refuse "negative control: a wrong Km is refused" grep -q "authenticated" <<< "$out"
check "the MAF's Km is on the vendor's token" test "$(kinds_on maf)" = km
finish
