#!/usr/bin/env bash
# A token that fails a read is not a token without the key: an enrolled device runs
# `m2m-enrolee connect` with each of its C_FindObjectsInit calls failed in turn
# (CKR_DEVICE_ERROR, as a network HSM's lost connection answers) through the fault module
# (tests/fault/m2mfault.c). It may fail that attempt, naming the error, but it must never
# enrol again: a new enrolment replaces the device's valid one at the MEF, for a token error.
# Then the device, unhindered, is served under the KeID it had.
. "$(dirname "$0")/lib.sh"

FAULT="$M2M_BUILD/tests/fault/libm2mfault.so"
e2e_lab lookuperror --expiry 600

enrolee connect > /dev/null 2> "$LAB/enrolee.log"
KE=$(device_ke_id)
check "the device enrolled" test -n "$KE"
enrolled=$(count_log "$LAB/mef.log" "event=enrolled ")

cp "$M2M_ENROLEE_CONFIG" "$LAB/enrolee-fault.json"
set_json "$LAB/enrolee-fault.json" pkcs11 module "\"$FAULT\""
# through_fault K: the device's connect with its K-th C_FindObjectsInit failed.
through_fault() {
    token_env enrolee
    env "${TOKEN_ENV[@]}" M2M_FAULT_MODULE="$M2M_MODULE" M2M_FAULT_FUNC=C_FindObjectsInit \
        M2M_FAULT_K="$1" M2M_FAULT_ACTION=CKR_DEVICE_ERROR M2M_FAULT_REPORT="$LAB/report" \
        "$M2M_BIN/m2m-enrolee" --config "$LAB/enrolee-fault.json" connect
}

# Every call in turn, until a run where the fault module had nothing left to fail.
acted=0 lookups=0 provisioned="" done=0
for ((k = 1; k <= 60; k++)); do
    rm -f "$LAB/report"
    rc=0
    through_fault "$k" > "$LAB/out" 2> "$LAB/err" || rc=$?
    if ! grep -q " acted C_FindObjectsInit $k " "$LAB/report"; then
        done=1
        break
    fi
    acted=$k
    grep -q 'event=lookup-failed .*C_FindObjectsInit: CKR_DEVICE_ERROR' "$LAB/err" &&
        lookups=$((lookups + 1))
    if grep -q 'event=provisioning' "$LAB/err"; then
        provisioned+=" $k($(grep -o 'event=provisioning .*reason=[a-z-]*' "$LAB/err" | head -1 |
            sed 's/.*reason=//'))"
    fi
    cat "$LAB/err" >> "$LAB/enrolee.log"
done
echo "# C_FindObjectsInit calls failed in turn: $acted; the key lookup among them: $lookups"
check "the fault module failed each C_FindObjectsInit of the connect in turn ($acted)" \
    test "$done" = 1 -a "$acted" -ge 2
check "a failed key lookup is reported with its call and CKR (event=lookup-failed: $lookups)" \
    test "$lookups" -ge 1
check "no failed read made the device provision again (runs that did:${provisioned:- none})" \
    test -z "$provisioned"
check "the MEF enrolled nothing more" test "$(count_log "$LAB/mef.log" "event=enrolled ")" = "$enrolled"
check "the device still holds its KeID" test "$(device_ke_id)" = "$KE"
out=$(enrolee connect 2>> "$LAB/enrolee.log")
check "... under which the MAF serves it" grep -q "authenticated $KE until" <<< "$out"
finish
