#!/usr/bin/env bash
# PKCS#11 fault-injection sweep (docs/testing.md, "PKCS#11 fault injection").
#
# For each operation: count its PKCS#11 calls through libm2mfault.so, then run it again once
# per injection (a CKR returned at call k, or an abort before or after call k) on a fresh
# copy of the token it started from, and check:
#   - no crash (death by a signal only when an abort was injected), no sanitizer report;
#   - a failure names the PKCS#11 function and the CKR on stderr; a success despite the
#     injection leaves exactly the operation's result;
#   - with the real module: fault_check finds no orphan key, and no older record of an
#     identity and no older Ke of a KpmID that the store still serves (a crash may leave
#     them on the token for the next open or sweep); every complete record the store
#     serves is one from before or after the operation and none that both have is
#     missing (per record: the old state or the new one, never both, never a mix);
#     `m2mhsm list --json` works, shows exactly those records (no torn one, no older
#     twin) and leaves the token as it found it.
#
# usage: sweep.sh [OPERATION...]   (default: all; see `ops` below)
# FAULT_FULL=1: every CKR and both aborts at every call. By default:
#   CKR_DEVICE_ERROR at every call;
#   the other CKRs at the first and last call of each function and at every call that
#   changes the token (C_CreateObject, C_DestroyObject, C_UnwrapKey, ...);
#   CKR_BUFFER_TOO_SMALL at every C_GetAttributeValue;
#   an abort before and after every call that changes the token, and before the first call.
#   An abort at any other call leaves the token exactly as the abort before the next call
#   that changes it does, and after an abort only the token is left to check.
#
# FAULT_JOBS=N (default 1) runs the operations in N sweeps side by side, each in a lab of
# its own; the lines of each operation stay together.
set -uo pipefail

if [ "${FAULT_JOBS:-1}" -gt 1 ]; then
    self=$0 jobs=$FAULT_JOBS
    names=("$@")
    [ ${#names[@]} -gt 0 ] || names=(kpm-import kpm-import-wrapped ke-import mef-enrol-tls12
        derive-km derive-kpsa store-fetched erase sweep list tls12 tls13)
    out=$(mktemp -d "${TMPDIR:-/tmp}/m2mhsm-fault-jobs.XXXXXX")
    for ((j = 0; j < jobs; j++)); do
        mine=()
        for ((i = j; i < ${#names[@]}; i += jobs)); do mine+=("${names[i]}"); done
        FAULT_JOBS=1 bash "$self" "${mine[@]}" > "$out/$j" 2>&1 &
    done
    wait
    passed=0 failed=0
    for ((j = 0; j < jobs; j++)); do
        grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$out/$j"
        read -r p _ f _ < <(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/$j" || echo "0 passed, 1 failed")
        passed=$((passed + p)) failed=$((failed + f))
    done
    rm -rf "$out"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi

: "${M2MHSM:?the m2mhsm CLI}" "${M2M_FAULT:?libm2mfault.so}" "${FAULT_OP:?fault_op}"
: "${FAULT_CHECK:?fault_check}" "${M2MHSM_REAL_MODULE:=/usr/lib/softhsm/libsofthsm2.so}"

LAB=$(mktemp -d "${TMPDIR:-/tmp}/m2mhsm-fault.XXXXXX")
[ -n "${KEEP_LAB:-}" ] || trap 'rm -rf "$LAB"' EXIT
bash "$(dirname "$0")/../../hsm-config/softhsm-conf.sh" "$LAB"
export SOFTHSM2_CONF="$LAB/softhsm2.conf"
(umask 077; openssl rand -hex 12 > "$LAB/user.pin"; openssl rand -hex 12 > "$LAB/so.pin")
export M2MHSM_TOKEN=pkcs11:token=fault M2MHSM_PIN_SOURCE="file:$LAB/user.pin"
export M2MHSM_LOCK_FILE="$LAB/lock" M2MHSM_MODULE="$M2MHSM_REAL_MODULE"
export M2M_FAULT_MODULE="$M2MHSM_REAL_MODULE"
# An instrumented build must report, not recover; a leak is a finding too.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

MUTATING='^C_(CreateObject|DestroyObject|CopyObject|SetAttributeValue|UnwrapKey|DeriveKey|GenerateKey|InitToken|InitPIN)$'
CKRS=(CKR_DEVICE_ERROR CKR_DEVICE_REMOVED CKR_SESSION_HANDLE_INVALID CKR_GENERAL_ERROR
      CKR_DEVICE_MEMORY)
EXPORT_EXPIRY=20500101T000000
SWEEP_AT=20600101T000000
SETUP_AT=20250101T000000
ENROLEE=//sp.example.com/cse1/Cdev1

m() { "$M2MHSM" "$@" > /dev/null; }

# ---- the starting states, built once with the real module ----
snapshot() { rm -rf "$LAB/state.$1"; cp -a "$LAB/tokens" "$LAB/state.$1"; }
restore() { rm -rf "$LAB/tokens"; cp -a "$LAB/state.$1" "$LAB/tokens"; }

m token-init --label fault --so-pin-source "file:$LAB/so.pin" || exit 1
for f in kpm kpm2 km km2; do openssl rand -hex 32 > "$LAB/$f.hex"; done
for f in export1 export2; do openssl rand -hex 48 > "$LAB/$f.hex"; done
"$FAULT_OP" wrap-kpm kek "$LAB/kpm2.hex" "$LAB/kpm2.wrapped" || exit 1
snapshot kek
# Written at a past instant: a record is older than the store's orphan grace when the
# sweep interrupts its erasure, as in production, whatever the sweep's own pace.
for stage in kpm ke enrolled full; do
    "$FAULT_OP" setup "$SETUP_AT" "$stage" "$LAB" || exit 1
    snapshot "$stage"
done
# "KIND IDENTITY" per record of a `m2mhsm list --json` (jq's start-up would double the
# sweep's time: the listing has one record a line, kind and identity its first two fields).
listing() { sed -nE 's/^\{"kind":"([^"]*)","identity":"([^"]*)".*$/\1 \2/p' "$1" | sort; }
"$M2MHSM" list --json > "$LAB/list.json" || exit 1
KE1=$(listing "$LAB/list.json" | awk '$1 == "ke" {print $2}')

# name | starting state | KeIDs random (1: compare them masked) | the command
ops=(
    "kpm-import|kek|0|$M2MHSM kpm import --kpm-id dev-2 --key-file $LAB/kpm.hex"
    "kpm-import-wrapped|kek|0|$M2MHSM kpm import --kpm-id dev-3 --wrapped $LAB/kpm2.wrapped --kek kek"
    "ke-import|enrolled|0|$M2MHSM ke import --kpm-id dev-1 --mef-fqdn mef.example.com --exported-file $LAB/export2.hex --enrolee-id $ENROLEE --target-id maf.example.com --enrolment-expiry $EXPORT_EXPIRY"
    "mef-enrol-tls12|enrolled|1|$FAULT_OP tls 1.2 dev-1 $LAB/kpm.hex mef.example.com $ENROLEE maf.example.com $EXPORT_EXPIRY"
    "derive-km|enrolled|0|$M2MHSM derive km --ke-id $KE1 --maf-id maf.example.com --valid-until 20450101T000000"
    "derive-kpsa|ke|0|$M2MHSM derive kpsa --ke-id $KE1 --enrolee-b-id //sp.example.com/cse2"
    "store-fetched|full|0|$FAULT_OP store-fetched 00112233445566778899AABBCCDDEEFF@mef.example.com $LAB/km2.hex maf.example.com //sp.example.com/cse1/Cdev2 20450101T000000"
    "erase|full|0|$M2MHSM erase --enrolee $ENROLEE"
    "sweep|full|0|$FAULT_OP sweep $SWEEP_AT"
    "list|full|0|$M2MHSM list --json"
    "tls12|kpm|0|$FAULT_OP tls 1.2 dev-1 $LAB/kpm.hex"
    "tls13|kpm|0|$FAULT_OP tls 1.3 dev-1 $LAB/kpm.hex"
)

# ---- one run ----

# State lines of the token (real module): "record ..." and "torn ..." and "problem ...".
state() {
    M2MHSM_MODULE="$M2MHSM_REAL_MODULE" "$FAULT_CHECK" > "$1.raw" 2> "$1.err"
    local rc=$?
    if [ "$mask" = 1 ]; then
        sed -E 's/[0-9A-F]{32}@[A-Za-z0-9.-]+/KEID/g' "$1.raw" | sort > "$1"
    else
        sort "$1.raw" > "$1"
    fi
    return $rc
}

# run_op ENV... : the operation under the fault module; sets rc, leaves $LAB/out, $LAB/err.
run_op() {
    # (The braces keep bash's own "Aborted" notice out of the sweep's output.)
    { env M2MHSM_MODULE="$M2M_FAULT" "$@" $cmd > "$LAB/out" 2> "$LAB/err"; } 2> /dev/null
    rc=$?
}

failures=0
finding() { # WHAT
    failures=$((failures + 1))
    op_failures=$((op_failures + 1))
    echo "  FAIL $op k=$k ${fn:-?} $action: $1"
    if [ -n "${VERBOSE:-}" ]; then sed 's/^/    | /' "$LAB/err" | head -20; fi
}

# The token's objects as they were in snapshot $1 (SoftHSM rewrites token.object at login).
same_as() { diff -rq -x token.object -x '*.lock' "$LAB/$1" "$LAB/tokens" > /dev/null; }

# Judge one injected run of $op at call $k ($fn) with $action.
judge() {
    if grep -qE 'Sanitizer|runtime error:' "$LAB/err"; then
        finding "sanitizer report: $(grep -m1 -E 'Sanitizer|runtime error:' "$LAB/err")"
        return
    fi
    local crash=0
    case $action in
    abort-*)
        crash=1
        if [ "$rc" -ne 134 ]; then finding "exit $rc instead of the injected abort"; return; fi ;;
    *)
        if [ "$rc" -ge 128 ]; then finding "crashed (exit $rc)"; return; fi
        if [ "$rc" -ne 0 ] && ! { grep -qw "$fn" "$LAB/err" && grep -qw "$action" "$LAB/err"; }; then
            finding "error does not name $fn and $action: $(head -c 200 "$LAB/err" | tr '\n' ' ')"
        fi ;;
    esac
    # Objects exactly as before or after the operation: states the baseline checked.
    if same_as "state.$start"; then
        if [ "$rc" -eq 0 ] && [ "$crash" = 0 ] && [ "$changes" = 1 ]; then
            finding "succeeded but changed nothing"
        fi
        return
    fi
    same_as "after.$op" && return
    check_store
}

# The store after a run, with the real module, against the states before and after.
check_store() {
    state "$LAB/now"
    local problems
    problems=$(grep '^problem' "$LAB/now" | sort -u | tr '\n' ';')
    if [ "$crash" = 1 ] && grep -q '^problem valid-ke-twice' "$LAB/now"; then
        finding "a superseded Ke is still served after a crash (issue 8 section 4): $problems"
    elif [ -n "$problems" ]; then
        finding "inconsistent store: $problems"
    fi
    # The records the store serves: an older twin ("hidden") is judged by fault_check.
    grep '^record' "$LAB/now" | sort -u > "$LAB/now.rec"
    if [ "$rc" -eq 0 ] && [ "$crash" = 0 ] && ! cmp -s "$LAB/now.rec" "$LAB/after.rec"; then
        finding "succeeded but the store is not the operation's result"
    fi
    # Per record: nothing foreign, nothing both states share missing.
    local extra missing
    extra=$(comm -23 "$LAB/now.rec" "$LAB/union.rec" | head -3 | tr '\n' ';')
    missing=$(comm -13 "$LAB/now.rec" "$LAB/common.rec" | head -3 | tr '\n' ';')
    [ -z "$extra" ] || finding "a record from neither state: $extra"
    [ -z "$missing" ] || finding "a record both states have is gone: $missing"
    # The listing: works, shows exactly the complete records, and writes nothing.
    if ! M2MHSM_MODULE="$M2MHSM_REAL_MODULE" "$M2MHSM" list --json > "$LAB/list.json" 2> "$LAB/list.err"; then
        finding "m2mhsm list --json fails afterwards: $(head -c 200 "$LAB/list.err")"
        return
    fi
    awk '/^record/ {print $2, $3}' "$LAB/now.raw" | sort > "$LAB/expected"
    listing "$LAB/list.json" | cmp -s - "$LAB/expected" ||
        finding "m2mhsm list shows other records than the store serves (a torn one, an older twin?)"
    if grep -q '^torn' "$LAB/now"; then
        state "$LAB/relisted"
        cmp -s "$LAB/now" "$LAB/relisted" ||
            finding "m2mhsm list wrote to the token, repairing a torn record (issue 8 section 4)"
    fi
}

# ---- one operation ----
total_failures=0
summary=()
sweep_op() { # NAME START MASK CMD
    op=$1 mask=$3 cmd=$4 op_failures=0
    local start=$2 injections=0
    fn="" k=0 action=count
    restore "$start"
    state "$LAB/before"; grep '^record' "$LAB/before" | sort -u > "$LAB/before.rec"
    rm -f "$LAB/trace" "$LAB/report"
    run_op M2M_FAULT_TRACE="$LAB/trace"
    if [ "$rc" -ne 0 ]; then
        finding "the operation fails without injection: $(head -c 300 "$LAB/err")"
        summary+=("$op: no baseline")
        return
    fi
    rm -rf "$LAB/after.$op"; cp -a "$LAB/tokens" "$LAB/after.$op"
    state "$LAB/after"; grep '^record' "$LAB/after" | sort -u > "$LAB/after.rec"
    changes=1
    cmp -s "$LAB/before.rec" "$LAB/after.rec" && changes=0
    # The two states every injected run is held to must themselves pass every check.
    local side
    for side in before after; do
        if grep -q '^problem' "$LAB/$side"; then
            finding "the $side state is inconsistent: $(grep '^problem' "$LAB/$side" | tr '\n' ';')"
        fi
    done
    if ! M2MHSM_MODULE="$M2MHSM_REAL_MODULE" "$M2MHSM" list --json > "$LAB/list.json" ||
        ! awk '/^record/ {print $2, $3}' "$LAB/after.raw" | sort | cmp -s - <(listing "$LAB/list.json"); then
        finding "m2mhsm list does not show the operation's result"
    fi
    sort -u "$LAB/before.rec" "$LAB/after.rec" > "$LAB/union.rec"
    comm -12 "$LAB/before.rec" "$LAB/after.rec" > "$LAB/common.rec"
    mapfile -t trace < "$LAB/trace"
    local calls=${#trace[@]}
    declare -A first=() last=()
    for ((k = 1; k <= calls; k++)); do
        fn=${trace[k - 1]}
        [ -n "${first[$fn]:-}" ] || first[$fn]=$k
        last[$fn]=$k
    done
    for ((k = 1; k <= calls; k++)); do
        fn=${trace[k - 1]}
        local mutating=0 representative=0
        [[ $fn =~ $MUTATING ]] && mutating=1
        [ "$mutating" = 1 ] || [ "${first[$fn]}" = "$k" ] || [ "${last[$fn]}" = "$k" ] &&
            representative=1
        local actions=(CKR_DEVICE_ERROR)
        if [ -n "${FAULT_FULL:-}" ] || [ "$representative" = 1 ]; then actions+=("${CKRS[@]:1}"); fi
        if [ -n "${FAULT_FULL:-}" ] || [ "$mutating" = 1 ] || [ "$k" = 1 ]; then
            actions+=(abort-before)
        fi
        if [ -n "${FAULT_FULL:-}" ] || [ "$mutating" = 1 ]; then actions+=(abort-after); fi
        [ "$fn" = C_GetAttributeValue ] && actions+=(CKR_BUFFER_TOO_SMALL)
        for action in "${actions[@]}"; do
            restore "$start"
            run_op M2M_FAULT_FUNC='*' M2M_FAULT_K="$k" M2M_FAULT_ACTION="$action"
            injections=$((injections + 1))
            judge
        done
    done
    printf '%-20s calls %4d  injections %5d  failures found %4d\n' \
        "$op" "$calls" "$injections" "$op_failures"
    summary+=("$op|$calls|$injections|$op_failures")
    total_failures=$((total_failures + op_failures))
}

selected=("$@")
passed=0 failed=0
for entry in "${ops[@]}"; do
    IFS='|' read -r name start msk command <<< "$entry"
    if [ ${#selected[@]} -gt 0 ] && [[ " ${selected[*]} " != *" $name "* ]]; then continue; fi
    sweep_op "$name" "$start" "$msk" "$command"
    if [ "$op_failures" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
