#!/usr/bin/env bash
# Token objects per device for each role (docs/performance.md, "Objects per device"): the
# real services enrol a device and serve it, once with TLS 1.2 and once with TLS 1.3, and
# pkcs11-tool (not our library) counts the m2mhsm objects on each token. The Kpm is
# imported with the one form its bootstrap uses (m2mhsm --forms); the MAF and the device
# choose their Km's form from their configuration.
. "$(dirname "$0")/lib.sh"

# objects TOKEN CLASS: the m2mhsm objects of one class ("Secret Key" or "Data") on a lab token.
objects() {
    local up=${1^^} pin
    pin="M2M_${up}_PIN_FILE"
    P11PIN=$(cat "${!pin}") pkcs11-tool --module "$M2M_MODULE" --token-label "$1" --login \
        --pin env:P11PIN --list-objects 2> /dev/null |
        awk -v cls="$2" '/^[A-Z][a-z]+( [A-Z][a-z]+)? [Oo]bject/{c=$0; next}
            /label: *.?m2mhsm:/ && index(c, cls) == 1 {n++} END{print n+0}'
}

# run_lab 2|3: one device enrolled and served over TLS 1.<v>; the lab stopped after, so
# nothing writes while pkcs11-tool reads.
run_lab() {
    local v=$1 scheme=tls forms=tls12
    [ "$v" = 3 ] && scheme=tls13 && forms=tls13
    e2e_lab_init "objects$v" --expiry 600
    for t in mef enrolee; do
        m2mhsm_on "$t" erase --key-id "$M2M_KPM_ID" > /dev/null
        m2mhsm_on "$t" --forms "$forms" kpm import --kpm-id "$M2M_KPM_ID" \
            --key-file "$M2M_KPM_HEX_FILE" > /dev/null
    done
    if [ "$v" = 3 ]; then
        set_json "$M2M_MAF_CONFIG" maf tls13 true
        set_json "$M2M_MEF_CONFIG" mef tls13 true
    fi
    set_json "$M2M_ENROLEE_CONFIG" enrolee mef_uri "\"$scheme://127.0.0.1:$M2M_MEF_PORT\""
    set_json "$M2M_ENROLEE_CONFIG" enrolee target_uri "\"$scheme://127.0.0.1:$M2M_MAF_PORT\""
    bash "$LABSH" start "$LAB" > /dev/null
    out=$(enrolee connect 2> "$LAB/enrolee.log")
    check "TLS 1.$v: the device enrolled and was served by the MAF" \
        grep -q "authenticated $(device_ke_id) until" <<< "$out"
    bash "$LABSH" stop "$LAB" > /dev/null
    local role keys data
    for role in mef maf enrolee; do
        keys=$(objects "$role" "Secret Key")
        data=$(objects "$role" "Data")
        echo "# TLS 1.$v $role: $keys secret keys, $data data objects per device"
        eval "${role}_keys=$keys ${role}_data=$data"
    done
    # MEF: Kpm (its one TLS form), Ke (raw, Km is derived from it); Kpm, configuration and
    # Ke metadata. MAF: Km (one form). Device: Kpm, Ke, Km; their metadata.
    check "TLS 1.$v MEF: 2 keys (Kpm $forms, Ke raw), 3 metadata; saw $mef_keys, $mef_data" \
        test "$mef_keys $mef_data" = "2 3"
    check "TLS 1.$v MAF: 1 key (Km $forms), 1 metadata; saw $maf_keys, $maf_data" \
        test "$maf_keys $maf_data" = "1 1"
    check "TLS 1.$v device: 3 keys (Kpm, Ke, Km), 3 metadata; saw $enrolee_keys, $enrolee_data" \
        test "$enrolee_keys $enrolee_data" = "3 3"
    e2e_cleanup
    LAB=
}

run_lab 2
run_lab 3
finish
