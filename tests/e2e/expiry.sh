#!/usr/bin/env bash
# Enrolment Expiry at the edges (the CR): a MAF whose local policy keeps Km shorter than the
# device's Ke rejects the device, which re-provisions by itself and reconnects; a device with
# a renewal margin renews ahead of every expiry and never sees an outage; and expired keys
# are erased by the servers' sweep even when nobody comes back for them.
. "$(dirname "$0")/lib.sh"
e2e_lab_init expiry --expiry 6
set_json "$M2M_MAF_CONFIG" maf max_lifetime 3
# The MAF's first sweep comes after the rejection below (a swept KeID is simply unknown:
# the MAF would fetch it again, and the MEF would grant it while Ke is valid).
set_json "$M2M_MAF_CONFIG" maf sweep_interval 8
set_json "$M2M_MEF_CONFIG" mef sweep_interval 1
bash "$LABSH" start "$LAB" > /dev/null

# ---- the target rejects first: automatic re-provisioning ----
enrolee connect > /dev/null 2> "$LAB/enrolee.log"
KE1=$(device_ke_id)
check "device connected (Km kept 3 s at the MAF, 6 s at the device)" \
    wait_log "$LAB/maf.log" "event=handshake-ok ke_id=$KE1"
maf_exp=$(m2mhsm_on maf list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["expires"])')
dev_exp=$(m2mhsm_on enrolee list --json | python3 -c 'import json,sys; print([r for r in json.load(sys.stdin) if r["kind"]=="km"][0]["expires"])')
check "the MAF keeps Km no longer than its policy allows ($maf_exp < $dev_exp)" test "$maf_exp" \< "$dev_exp"
sleep 3.3
out=$(enrolee connect 2> "$LAB/enrolee.log")
KE2=$(device_ke_id)
check "the MAF rejected the device's still-valid-looking key" \
    grep -q "event=rejected-by-target ke_id=$KE1" "$LAB/enrolee.log"
check "... erasing the Enrolee's credentials there" \
    wait_log "$LAB/maf.log" "event=rejected-expired ke_id=$KE1 .*erased=1"
check "the device re-provisioned because of the rejection" \
    grep -q "event=provisioning .*reason=rejected-by-target" "$LAB/enrolee.log"
check "and reconnected with a new KeID in the same command" grep -q "authenticated $KE2 until" <<< "$out"
check "KeID changed" test "$KE2" != "$KE1"

# ---- a renewal margin: no outage ----
cp "$M2M_ENROLEE_CONFIG" "$LAB/enrolee-renew.json"
set_json "$LAB/enrolee-renew.json" enrolee renewal_margin 4
rc=0
"$M2M_BIN/m2m-enrolee" --config "$LAB/enrolee-renew.json" run --duration 10 > /dev/null \
    2> "$LAB/renew.log" || rc=$?
check "a device renewing 4 s ahead ran 10 s without being closed or refused" \
    grep -q "event=summary .*closed_by_target=0 failed=0" "$LAB/renew.log"
check "... exit status 0" test "$rc" = 0
n=$(grep -c "reason=renewal-margin" "$LAB/renew.log" || true)
check "... renewing ahead of expiry at least 3 times (did $n)" test "$n" -ge 3
refuse "... and never re-provisioned because of a rejection" grep -q "reason=rejected-by-target" "$LAB/renew.log"

# ---- nobody comes back: the sweeps erase ----
maf_sweeps=$(count_log "$LAB/maf.log" "reason=expired at=sweep")
mef_sweeps=$(count_log "$LAB/mef.log" "reason=expired at=sweep")
check "MAF sweep emptied its token once the last Km expired" \
    wait_until 20 'test -z "$(kinds_on maf)"'
check "... and logged it" test "$(count_log "$LAB/maf.log" "reason=expired at=sweep")" -gt "$maf_sweeps"
check "MEF sweep erased the expired enrolment, keeping Kpm and configuration" \
    wait_until 10 'test "$(kinds_on mef)" = "enrolment kpm"'
check "... and logged it" test "$(count_log "$LAB/mef.log" "reason=expired at=sweep")" -gt "$mef_sweeps"
finish
