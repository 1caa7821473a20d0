#!/usr/bin/env bash
# Enrolment Expiry at the edges (the CR): a MAF whose local policy keeps Km shorter than the
# device's Ke rejects the device, which re-provisions by itself and reconnects; a device with
# a renewal margin renews ahead of every expiry and never sees an outage; and expired keys
# are erased by the servers' sweep even when nobody comes back for them.
#
# Nothing here races the clock: each phase waits for the expiry instant it needs (read from
# the tokens) and then has the rest of a long lifetime as margin, and sweeps run when the
# test asks for them (SIGUSR1), not on a timer.
. "$(dirname "$0")/lib.sh"
e2e_lab_init expiry --expiry 60
set_json "$M2M_MAF_CONFIG" maf max_lifetime 2
set_json "$M2M_MAF_CONFIG" maf sweep_interval 86400
set_json "$M2M_MEF_CONFIG" mef sweep_interval 86400
bash "$LABSH" start "$LAB" > /dev/null

# ---- the target rejects first: automatic re-provisioning ----
enrolee connect > /dev/null 2> "$LAB/enrolee.log"
KE1=$(device_ke_id)
check "device connected (Km kept 2 s at the MAF, 60 s at the device)" \
    wait_log "$LAB/maf.log" "event=handshake-ok ke_id=$KE1"
maf_exp=$(last_expiry maf km)
dev_exp=$(last_expiry enrolee km)
check "the MAF keeps Km no longer than its policy allows ($maf_exp < $dev_exp)" test "$maf_exp" \< "$dev_exp"
check "the MAF's Km has expired (the device's has not)" wait_past "$maf_exp"
out=$(enrolee connect 2> "$LAB/enrolee.log")
KE2=$(device_ke_id)
check "the MAF rejected the device's still-valid-looking key" \
    grep -q "event=rejected-by-target ke_id=$KE1" "$LAB/enrolee.log"
check "... erasing the Enrolee's credentials there" \
    wait_log "$LAB/maf.log" "event=rejected-expired ke_id=$KE1 .*erased=1"
expired_counted() {
    curl -sS "http://127.0.0.1:$M2M_MAF_METRICS_PORT/metrics" |
        grep -qx 'm2m_handshakes_total{result="expired"} 1'
}
check "... and counted it as an expired handshake (m2m_handshakes_total)" wait_until 30 expired_counted
check "the device re-provisioned because of the rejection" \
    grep -q "event=provisioning .*reason=rejected-by-target" "$LAB/enrolee.log"
check "and reconnected with a new KeID in the same command" grep -q "authenticated $KE2 until" <<< "$out"
check "KeID changed" test "$KE2" != "$KE1"

# ---- a renewal margin: no outage ----
# Ke lives 10 s and the MAF keeps Km as long; the device renews 6 s ahead, so every
# renewal has 6 s of slack before the MAF would close the association.
bash "$LABSH" stop "$LAB" > /dev/null
m2mhsm_on enrolee erase --enrolee "$M2M_ENROLEE_ID" > /dev/null
check "the device starts the renewal phase with only its Kpm" test "$(kinds_on enrolee)" = kpm
set_enrolment_expiry "$M2M_MEF_CONFIG" 10
set_json "$M2M_MAF_CONFIG" maf max_lifetime 0
bash "$LABSH" start "$LAB" > /dev/null
cp "$M2M_ENROLEE_CONFIG" "$LAB/enrolee-renew.json"
set_json "$LAB/enrolee-renew.json" enrolee enrolment_expiry '"10"'
set_json "$LAB/enrolee-renew.json" enrolee renewal_margin 6
rc=0
on_token enrolee "$M2M_BIN/m2m-enrolee" --config "$LAB/enrolee-renew.json" run --duration 16 > /dev/null \
    2> "$LAB/renew.log" || rc=$?
check "a device renewing 6 s ahead ran 16 s without being closed or refused" \
    grep -q "event=summary .*closed_by_target=0 failed=0" "$LAB/renew.log"
check "... exit status 0" test "$rc" = 0
n=$(count_log "$LAB/renew.log" "reason=renewal-margin")
check "... renewing ahead of expiry more than once (did $n)" test "$n" -ge 2
refuse "... and never re-provisioned because of a rejection" grep -q "reason=rejected-by-target" "$LAB/renew.log"

# ---- nobody comes back: the sweeps erase ----
maf_sweeps=$(count_log "$LAB/maf.log" "reason=expired at=sweep")
mef_sweeps=$(count_log "$LAB/mef.log" "reason=expired at=sweep")
check "every Km at the MAF has expired" wait_past "$(last_expiry maf km)"
check "every Ke at the MEF has expired" wait_past "$(last_expiry mef ke)"
check "MAF sweep (SIGUSR1) done" sweep_now maf
check "... it emptied its token" test -z "$(kinds_on maf)"
check "... and logged it" test "$(count_log "$LAB/maf.log" "reason=expired at=sweep")" -gt "$maf_sweeps"
check "MEF sweep (SIGUSR1) done" sweep_now mef
check "... it erased the expired enrolment, keeping Kpm and configuration" \
    test "$(kinds_on mef)" = "enrolment kpm"
check "... and logged it" test "$(count_log "$LAB/mef.log" "reason=expired at=sweep")" -gt "$mef_sweeps"
finish
