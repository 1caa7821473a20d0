#!/usr/bin/env bash
# Crash consistency with the real services: the MEF killed between writing a device's new
# Ke and erasing its old one (the state made here by crash_tool, which runs the library's
# first step of a re-enrolment and _exit()s) refuses the old KeID once restarted, and only
# the newest Ke of the KpmID is served; `m2mhsm list` on a token with a torn record and a
# superseded Ke changes nothing, while `m2mhsm repair` removes the torn record.
. "$(dirname "$0")/lib.sh"
e2e_lab crash --expiry 600
CRASH_TOOL="$M2M_BUILD/tests/crash_tool"
tool_on() { # mef|maf ARGS...
    local t=$1 up=${1^^}; shift
    local token="M2M_${up}_TOKEN" pin="M2M_${up}_PIN_FILE" lock="M2M_${up}_LOCK_FILE"
    on_token "$t" --init-args "$CRASH_TOOL" "$M2M_MODULE" "${!token}" "file:${!pin}" "${!lock}" "$@"
}
state_of() { # mef|maf KIND IDENTITY: the state column of `m2mhsm list --json`
    m2mhsm_on "$1" list --json | python3 -c 'import json,sys
print(" ".join(r["state"] for r in json.load(sys.stdin) if r["kind"]==sys.argv[1] and r["identity"]==sys.argv[2]))' "$2" "$3"
}

enrolee connect --message hello > /dev/null 2> "$LAB/enrolee.log"
KE1=$(device_ke_id)
check "device enrolled" test -n "$KE1"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KE1/21")
check "before the crash the MEF serves Km for the device's KeID (${reply%% *})" test "${reply%% *}" = 200

bash "$LABSH" stop "$LAB" > /dev/null
KE2=$(tool_on mef reenrol-crash "$M2M_KPM_ID" "$M2M_MEF_FQDN" "$M2M_ENROLEE_ID" "$M2M_MAF_ID" 600)
check "the crash left a second Ke for the KpmID" test "$(kinds_on mef)" = "enrolment ke ke kpm"
check "m2mhsm list marks the old Ke superseded" test "$(state_of mef ke "$KE1")" = superseded
check "m2mhsm list shows the new Ke valid" test "$(state_of mef ke "$KE2")" = valid

# A listing is read-only: a torn record (older than the grace period) stays until repair.
tool_on maf torn torn-kpm
before=$(tool_on maf count)
m2mhsm_on maf list > /dev/null 2> "$LAB/list.err"
check "m2mhsm list changes nothing on the token" test "$(tool_on maf count)" = "$before"
check "m2mhsm list reports the damage and leaves it" grep -q "needs repair: 0 orphan key(s), 1 torn" "$LAB/list.err"
m2mhsm_on maf repair > "$LAB/repair.out" 2> /dev/null
check "m2mhsm repair removes the torn record" grep -q "removed 0 orphan key(s), 1 torn record(s)" "$LAB/repair.out"
check "m2mhsm repair destroyed its metadata and its two remaining keys" \
    test "$(tool_on maf count)" = "$((before - 3))"

bash "$LABSH" start "$LAB" > /dev/null
check "the restarted MEF erased the superseded Ke at open" \
    wait_log "$LAB/mef.log" "event=store-repaired .*superseded=1"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KE1/21")
check "/fetchCredentials/<old KeID>/21 is refused with 404 ($reply)" test "${reply%% *}" = 404
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KE2/21")
check "/fetchCredentials/<new KeID>/21 is served ($reply)" test "${reply%% *}" = 200
check "the MEF token holds one Ke" test "$(kinds_on mef)" = "enrolment ke kpm"

# The device still holds the old Ke. Once the MAF's copy of the old Km goes (the operator's
# erase here; its expiry otherwise), the MAF cannot fetch it again, the device re-provisions,
# and its new enrolment is the one served.
m2mhsm_on maf erase --key-id "$KE1" > /dev/null
enrolee connect --message again > "$LAB/again.out" 2>> "$LAB/enrolee.log"
check "the device re-provisioned and connected" grep -qx again "$LAB/again.out"
check "the device re-provisioned because the target refused the old KeID" \
    grep -q "event=provisioning .*reason=rejected-by-target" "$LAB/enrolee.log"
KE3=$(device_ke_id)
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KE3/21")
check "the device's new KeID is served (${reply%% *})" test "${reply%% *}" = 200
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KE2/21")
check "the Ke the crash left is gone after re-enrolment ($reply)" test "${reply%% *}" = 404
finish
