#!/usr/bin/env bash
# Bad input: a token that refuses every template, on every token kind (M2MHSM_TOKEN_KIND).
# The fault module (tests/fault/m2mfault.c) stands in front of the kind's module and answers
# every object-making call the library uses (C_CreateObject, C_GenerateKey, C_DeriveKey,
# C_CopyObject, C_UnwrapKey) with a template CKR, from the first call on, or from the third
# (the open's two template probes pass, so the stored writes take the retry without
# CKA_COPYABLE and the metadata fallback: the error must still name the call and the CKR).
# For each: kpm import, ke import, caps --json and an m2m-mef start fail with exit status
# non-zero and an error naming the PKCS#11 call and the CKR, and the tokens hold exactly the
# objects they held before (count_objects, by class). caps --json prints no verdict at all:
# a self-test whose probe key cannot be made proves nothing, so it must not claim
# "non_extractable_enforced" either way.
. "$(dirname "$0")/lib.sh"

COUNT="$M2M_BUILD/tests/count_objects"
FAULT="$M2M_BUILD/tests/fault/libm2mfault.so"
MAKERS=C_CreateObject,C_GenerateKey,C_DeriveKey,C_CopyObject,C_UnwrapKey
e2e_lab_init refusedtmpl

# On SoftHSM a fresh token is made through the refusing module: token-init makes no object,
# so it works, and every later write must fail. Other kinds' tokens are made by their own
# tools (hsm-config/kinds/), so the lab's enrolee token stands in.
TOKEN=$M2M_ENROLEE_TOKEN PIN=$M2M_ENROLEE_PIN_FILE INIT_ARGS=$M2M_ENROLEE_INIT_ARGS
if [ "$M2M_TOKEN_KIND" = softhsm ]; then
    cp "$M2M_ENROLEE_PIN_FILE" "$LAB/refuser.pin"
    cp "$LAB/enrolee.so.pin" "$LAB/refuser.so.pin"
    M2M_FAULT_MODULE=$M2M_MODULE M2M_FAULT_FUNC=$MAKERS M2M_FAULT_K=1+ \
        M2M_FAULT_ACTION=CKR_TEMPLATE_INCONSISTENT "$M2M_BIN/m2mhsm" --module "$FAULT" \
        --token pkcs11:token=refuser --pin-source "file:$LAB/refuser.pin" \
        token-init --label refuser --so-pin-source "file:$LAB/refuser.so.pin" > "$LAB/out"
    check "token-init through the refusing module makes the token (it creates no object)" \
        grep -q "initialised token refuser" "$LAB/out"
    TOKEN=pkcs11:token=refuser PIN=$LAB/refuser.pin
fi

objects() { # objects MODULE TOKEN PIN INIT-ARGS: the token's objects by class
    M2MHSM_MODULE_INIT_ARGS=$4 "$COUNT" "$1" "$2" "file:$3"
}
# refusing K CKR CMD...: CMD with the fault module refusing every object-making call from
# the K-th on with CKR; its exit status in rc, stdout in $LAB/out, stderr in $LAB/err.
refusing() {
    local k=$1 ckr=$2
    shift 2
    rc=0
    rm -f "$LAB/report"
    M2M_FAULT_MODULE=$M2M_MODULE M2M_FAULT_FUNC=$MAKERS M2M_FAULT_K=$k+ M2M_FAULT_ACTION=$ckr \
        M2M_FAULT_REPORT="$LAB/report" "$@" > "$LAB/out" 2> "$LAB/err" || rc=$?
}
cli() {
    M2MHSM_MODULE_INIT_ARGS=$INIT_ARGS "$M2M_BIN/m2mhsm" --module "$FAULT" --token "$TOKEN" \
        --pin-source "file:$PIN" "$@"
}
# refused WHAT CALL CKR: the last run failed, the fault module refused a call, and stderr
# names CALL ("C_CreateObject(...)", a regex) with CKR.
refused() {
    local what=$1 call=$2 ckr=$3
    check "$what: exit status non-zero" test "$rc" -ne 0
    check "$what: the fault module refused an object-making call" grep -q " acted " "$LAB/report"
    check "$what: the error names $call and $ckr" grep -qE "$call: $ckr" "$LAB/err"
    echo "# $what: $(grep -E "$call: $ckr" "$LAB/err" | head -1)"
}

openssl rand -hex 48 > "$LAB/ke.hex" # an exported Ke: it is never stored
copyable=$(M2MHSM_MODULE_INIT_ARGS=$INIT_ARGS "$M2M_BIN/m2mhsm" --module "$M2M_MODULE" \
    --token "$TOKEN" --pin-source "file:$PIN" caps --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["templates"]["CKA_COPYABLE"])')
objects "$M2M_MODULE" "$TOKEN" "$PIN" "$INIT_ARGS" > "$LAB/before"
objects "$M2M_MODULE" "$M2M_MEF_TOKEN" "$M2M_MEF_PIN_FILE" "$M2M_MEF_INIT_ARGS" > "$LAB/mef-before"
check "count_objects reads the ${M2M_TOKEN_KIND} tokens" test -s "$LAB/before" -a -s "$LAB/mef-before"
cp "$M2M_MEF_CONFIG" "$LAB/mef-refusing.json"
set_json "$LAB/mef-refusing.json" pkcs11 module "\"$FAULT\""

for run in 1:CKR_TEMPLATE_INCONSISTENT 1:CKR_ATTRIBUTE_TYPE_INVALID 3:CKR_ATTRIBUTE_TYPE_INVALID; do
    k=${run%%:*} ckr=${run#*:}
    echo "# every object-making call refused from the ${k}. on with $ckr"
    refusing "$k" "$ckr" cli kpm import --kpm-id dev-refused --key-file "$M2M_KPM_HEX_FILE"
    refused "kpm import ($k+ $ckr)" "C_CreateObject\([^)]*\)" "$ckr"
    if [ "$k" = 3 ] && [ "$copyable" = True ]; then
        # The probes passed, so the store tried again without CKA_COPYABLE; both refusals
        # are named.
        check "kpm import ($k+ $ckr): the retry without CKA_COPYABLE is named" \
            grep -q "also without CKA_COPYABLE: C_CreateObject([^)]*): $ckr" "$LAB/err"
    fi
    refusing "$k" "$ckr" cli ke import --kpm-id dev-refused --mef-fqdn "$M2M_MEF_FQDN" \
        --exported-file "$LAB/ke.hex" --enrolment-expiry 3600
    refused "ke import ($k+ $ckr)" "C_CreateObject\([^)]*\)" "$ckr"
    refusing "$k" "$ckr" cli caps --json
    refused "caps --json ($k+ $ckr)" \
        "C_CreateObject\(self-test probe key, session object\): $ckr; C_CreateObject\(self-test probe key, token object\)" "$ckr"
    refuse "caps --json ($k+ $ckr): no verdict on stdout" grep -q non_extractable_enforced "$LAB/out"
    refusing "$k" "$ckr" "$M2M_BIN/m2m-mef" --config "$LAB/mef-refusing.json"
    refused "m2m-mef start ($k+ $ckr)" \
        "event=token-selftest-failed .*C_CreateObject\(self-test probe key, session object\): $ckr; C_CreateObject\(self-test probe key, token object\)" "$ckr"
    objects "$M2M_MODULE" "$TOKEN" "$PIN" "$INIT_ARGS" > "$LAB/after"
    check "($k+ $ckr) the token holds exactly the objects it held before" \
        cmp -s "$LAB/before" "$LAB/after"
    objects "$M2M_MODULE" "$M2M_MEF_TOKEN" "$M2M_MEF_PIN_FILE" "$M2M_MEF_INIT_ARGS" > "$LAB/after"
    check "($k+ $ckr) the MEF token holds exactly the objects it held before" \
        cmp -s "$LAB/mef-before" "$LAB/after"
done
# The same import, unhindered, works: the refusals were the fault module's.
M2MHSM_MODULE_INIT_ARGS=$INIT_ARGS "$M2M_BIN/m2mhsm" --module "$M2M_MODULE" --token "$TOKEN" \
    --pin-source "file:$PIN" kpm import --kpm-id dev-refused --key-file "$M2M_KPM_HEX_FILE" \
    > "$LAB/out"
check "the same kpm import without the fault module works" grep -q "dev-refused" "$LAB/out"
finish
