#!/usr/bin/env bash
# Token objects per device for each role (docs/performance.md, "Objects per device"): the
# real services enrol a device and serve it, once with TLS 1.2 and once with TLS 1.3, and
# pkcs11-tool (not our library; on a module that needs init args, through the forwarding
# fault module that passes them) counts the m2mhsm objects on each token, on every kind. The Kpm is
# imported with the one form its bootstrap uses (m2mhsm --forms); the MAF and the device
# choose their Km's form from their configuration.
. "$(dirname "$0")/lib.sh"

FAULT="$M2M_BUILD/tests/fault/libm2mfault.so"

# objects TOKEN keys|metadata: the m2mhsm keys ("m2mhsm:" secret keys), or metadata objects
# ("m2mhsm:" data objects, or "m2mhsm-meta:" keys where the token takes no private data
# objects: docs/tokens.md), on a lab token.
objects() {
    local up=${1^^} pin token init module=$M2M_MODULE which
    pin="M2M_${up}_PIN_FILE" token="M2M_${up}_TOKEN" init="M2M_${up}_INIT_ARGS"
    # The slot where the URI names one (kinds whose labels repeat across labs), else the label.
    which=(--token-label "$1")
    [[ ${!token} =~ slot-id=([0-9]+) ]] && which=(--slot "${BASH_REMATCH[1]}")
    # pkcs11-tool cannot pass init args (softokn needs them): it reaches such a module through
    # the fault module, which adds them to C_Initialize and injects nothing.
    [ -n "${!init:-}" ] && module=$FAULT
    P11PIN=$(cat "${!pin}") M2M_FAULT_MODULE=$M2M_MODULE M2M_FAULT_INIT_ARGS=${!init:-} \
        pkcs11-tool --module "$module" "${which[@]}" --login --pin env:P11PIN --list-objects \
        2> /dev/null |
        awk -v want="$2" '/^[A-Z][a-z]+( [A-Z][a-z]+)? [Oo]bject/{c=$0; next}
            /label: *.?m2mhsm:/ && index(c, "Secret Key") == 1 {k++}
            /label: *.?m2mhsm:/ && index(c, "Data") == 1 {m++}
            /label: *.?m2mhsm-meta:/ && index(c, "Secret Key") == 1 {m++}
            END{print (want == "keys" ? k : m) + 0}'
}

# run_lab 2|3: one device enrolled and served over TLS 1.<v>; the lab stopped after, so
# nothing writes while pkcs11-tool reads.
run_lab() {
    local v=$1 scheme=tls forms=tls12
    [ "$v" = 3 ] && scheme=tls13 && forms=tls13
    e2e_lab_init "objects$v" --expiry 600
    # One device: the lab's second one (the Enrolee B's) is taken out of the tokens and of
    # the MEF's list, so that the counts are those of the MAF's device alone.
    set_json "$M2M_MEF_CONFIG" - enrolees \
        "$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["enrolees"][:1]))' "$M2M_MEF_CONFIG")"
    m2mhsm_on mef enrolee revoke --kpm-id "$M2M_KPM_B_ID" --erase-kpm > /dev/null
    m2mhsm_on enrolee erase --key-id "$M2M_KPM_B_ID" > /dev/null
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
    local role
    declare -A n
    for role in mef maf enrolee; do
        n[$role]="$(objects "$role" keys) $(objects "$role" metadata)"
        echo "# TLS 1.$v $role: keys and metadata objects per device: ${n[$role]}"
    done
    # MEF: Kpm (its one TLS form), Ke (raw, Km is derived from it); Kpm, configuration and
    # Ke metadata. MAF: Km in the TLS 1.2 form, and with tls13 (TLS 1.3 beside 1.2) the
    # TLS 1.3 form too. Device: Kpm, Ke, Km; their metadata.
    check "TLS 1.$v MEF: 2 keys (Kpm $forms, Ke raw), 3 metadata; saw ${n[mef]}" \
        test "${n[mef]}" = "2 3"
    local maf_keys=1
    [ "$v" = 3 ] && maf_keys=2
    check "TLS 1.$v MAF: $maf_keys key(s) (Km per protocol it serves), 1 metadata; saw ${n[maf]}" \
        test "${n[maf]}" = "$maf_keys 1"
    check "TLS 1.$v device: 3 keys (Kpm, Ke, Km), 3 metadata; saw ${n[enrolee]}" \
        test "${n[enrolee]}" = "3 3"
    [ "$v" = 2 ] && target_to_tls13
    e2e_cleanup
    LAB=
}

# The MAF moves to TLS 1.3: the device's Km has only its TLS 1.2 form, so the device derives
# it again (a new enrolment: the Kpm and the MEF stay on TLS 1.2) instead of failing.
target_to_tls13() {
    set_json "$M2M_MAF_CONFIG" maf tls13 true
    set_json "$M2M_ENROLEE_CONFIG" enrolee target_uri "\"tls13://127.0.0.1:$M2M_MAF_PORT\""
    bash "$LABSH" start "$LAB" > /dev/null
    out=$(enrolee connect 2>> "$LAB/enrolee.log")
    check "target now TLS 1.3: the device re-provisioned for the missing form" \
        grep -q "event=provisioning .*reason=missing-form" "$LAB/enrolee.log"
    check "... and was served over TLS 1.3" \
        grep -q "authenticated $(device_ke_id) until" <<< "$out"
    check "the MAF fetched the new Km and served it over TLS 1.3" \
        wait_log "$LAB/maf.log" "event=handshake-ok ke_id=$(device_ke_id) .*cipher=TLS_AES_128_GCM_SHA256"
    bash "$LABSH" stop "$LAB" > /dev/null
    check "the device holds one Km key again (the old one replaced): 3 keys, saw $(objects enrolee keys)" \
        test "$(objects enrolee keys)" = 3
}

run_lab 2
run_lab 3
finish
