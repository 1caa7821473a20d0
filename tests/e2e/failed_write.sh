#!/usr/bin/env bash
# A write that fails leaves nothing behind, on every token kind (M2MHSM_TOKEN_KIND): each
# C_CreateObject of a Kpm import (its metadata, then each form's key) is failed in turn with
# CKR_DEVICE_ERROR through the fault module (tests/fault/m2mfault.c); the import must fail
# naming the call and the CKR, and the token must hold exactly the objects it held before
# (counted by class with count_objects, not our key store). Then the same import, unhindered,
# works and is listed.
. "$(dirname "$0")/lib.sh"

COUNT="$M2M_BUILD/tests/count_objects"
FAULT="$M2M_BUILD/tests/fault/libm2mfault.so"
e2e_lab_init failedwrite

objects() {
    on_token enrolee --init-args "$COUNT" "$M2M_MODULE" "$M2M_ENROLEE_TOKEN" \
        "file:$M2M_ENROLEE_PIN_FILE"
}
# through_fault K ARGS...: m2mhsm on the enrolee token with the K-th C_CreateObject failed.
through_fault() {
    local k=$1
    shift
    M2M_FAULT_MODULE=$M2M_MODULE M2M_FAULT_FUNC=C_CreateObject M2M_FAULT_K=$k \
        M2M_FAULT_ACTION=CKR_DEVICE_ERROR on_token enrolee --init-args "$M2M_BIN/m2mhsm" \
        --module "$FAULT" --token "$M2M_ENROLEE_TOKEN" --pin-source "file:$M2M_ENROLEE_PIN_FILE" \
        --lock-file "$M2M_ENROLEE_LOCK_FILE" "$@"
}
listed() { m2mhsm_on enrolee list --json | grep -q "\"identity\":\"$1\""; }

objects > "$LAB/before"
check "count_objects reads the ${M2MHSM_TOKEN_KIND:-softhsm} token" test -s "$LAB/before"
# Every C_CreateObject of the run in turn, from the first (the open's template probes, on
# session objects) to the last (the import's metadata and keys; on some kinds a retry or a
# rewrite adds some), until a run where the fault module had nothing left to fail.
failed=0
for ((k = 1; k <= 20; k++)); do
    rm -f "$LAB/report"
    rc=0
    M2M_FAULT_REPORT="$LAB/report" through_fault "$k" kpm import --kpm-id "dev-fail-$k" \
        --key-file "$M2M_KPM_HEX_FILE" > "$LAB/out" 2> "$LAB/err" || rc=$?
    if ! grep -q " acted C_CreateObject $k " "$LAB/report"; then
        check "after $((k - 1)) C_CreateObject calls, the import ran unhindered" listed "dev-fail-$k"
        m2mhsm_on enrolee erase --key-id "dev-fail-$k" > /dev/null
        break
    fi
    if [ "$rc" -eq 0 ]; then
        # A probe's session object failed (which says nothing about templates): the import
        # goes on and must have worked.
        check "C_CreateObject #$k failed (a probe): the import still worked" listed "dev-fail-$k"
        m2mhsm_on enrolee erase --key-id "dev-fail-$k" > /dev/null
    else
        failed=$((failed + 1))
        check "C_CreateObject #$k failed: the import names the call and the CKR" \
            grep -q "C_CreateObject(.*): CKR_DEVICE_ERROR" "$LAB/err"
        refuse "C_CreateObject #$k failed: dev-fail-$k is not listed" listed "dev-fail-$k"
    fi
    objects > "$LAB/after"
    check "C_CreateObject #$k failed: the token holds exactly the objects it held before" \
        cmp -s "$LAB/before" "$LAB/after"
done
check "at least 3 stored creations were failed (metadata, tls12 key, tls13 key)" test "$failed" -ge 3
m2mhsm_on enrolee kpm import --kpm-id dev-ok --key-file "$M2M_KPM_HEX_FILE" > /dev/null
check "the same import without a fault works and is listed" listed dev-ok
finish
