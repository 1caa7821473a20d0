#!/usr/bin/env bash
# The whole framework on loopback with all three programs: the device enrols at the MEF
# (10.3.1), the MAF fetches Km from the MEF on the device's first connection (8.3.2.1) and
# serves it from its token afterwards; at the Enrolment Expiry the MAF closes the open
# association, refuses the old KeID and erases it, the MEF refuses and erases it too, and
# the device re-provisions and reconnects (the CR). SIGTERM stops both servers cleanly.
. "$(dirname "$0")/lib.sh"
# Everything before the expiry must happen before it however loaded the machine is: 45 s of
# margin, then the test waits for the instant itself (read from the token).
EXPIRY=45
e2e_lab flow --expiry "$EXPIRY"

out=$(enrolee connect --message hello 2> "$LAB/enrolee.log")
KE1=$(device_ke_id)
check "device enrolled and connected on its first try" \
    grep -q "authenticated $KE1 until" <<< "$out"
check "the MAF echoes the device's message over the association" grep -qx hello <<< "$out"
check "MEF logged the enrolment with the Enrolment Expiry" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID ke_id=$KE1 .*expiry=[0-9]{8}T[0-9]{6}"
check "MEF served Km (SUID 21) to the authenticated MAF" \
    wait_log "$LAB/mef.log" "event=fetched ke_id=$KE1 suid=21 originator=$M2M_MAF_ID"
check "MAF fetched Km and completed the same handshake" \
    wait_log "$LAB/maf.log" "event=handshake-ok ke_id=$KE1"
check "MEF token: Kpm, configuration, Ke" test "$(kinds_on mef)" = "enrolment ke kpm"
check "MAF token: Km only" test "$(kinds_on maf)" = "km"
check "device token: Kpm, Ke, Km" test "$(kinds_on enrolee)" = "ke km kpm"
check "Km at the MAF expires with Ke at the MEF" test \
    "$(m2mhsm_on maf list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["expires"])')" = \
    "$(m2mhsm_on mef list --json | python3 -c 'import json,sys; print([r for r in json.load(sys.stdin) if r["kind"]=="ke"][0]["expires"])')"

enrolee connect > /dev/null 2>> "$LAB/enrolee.log"
check "a second connection is served from the MAF's token without a fetch" \
    test "$(count_log "$LAB/maf.log" "event=fetched")" = 1
check "... and completes" test "$(count_log "$LAB/maf.log" "event=handshake-ok ke_id=$KE1")" = 2

# An association open across the expiry is closed by the MAF at that instant.
enrolee connect --hold $((EXPIRY * 3)) > /dev/null 2> "$LAB/hold.log" &
hold=$!
E2E_EXTRA_PIDS+=("$hold")
check "MAF closes the open association when Km expires" \
    wait_log "$LAB/maf.log" "event=closed-expired ke_id=$KE1" $((EXPIRY * 2))
refuse "the held connection ends as closed by the target" wait "$hold"
check "the device saw the target close it" grep -q "event=closed-by-target" "$LAB/hold.log"

# After the expiry: the old KeID is refused and erased everywhere.
kpm_like=$(openssl rand -hex 32)
check "MAF refuses the expired KeID (openssl s_client: unknown_psk_identity)" sh -c \
    "openssl s_client -connect 127.0.0.1:$M2M_MAF_PORT -tls1_2 -psk $kpm_like -psk_identity $KE1 < /dev/null 2>&1 | grep -q 'alert unknown psk identity'"
check "MAF logged rejected-expired and erased the Enrolee's credentials" \
    wait_log "$LAB/maf.log" "event=rejected-expired ke_id=$KE1 enrolee_id=$M2M_ENROLEE_ID erased=1"
check "MAF token is empty" test -z "$(kinds_on maf)"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KE1/21")
check "MEF answers 410 with status:false for the expired KeID" \
    grep -q '^410 {"status":false,"errorString":"Enrolment Expiry passed' <<< "$reply"
check "MEF erased the enrolment but kept Kpm and configuration" test "$(kinds_on mef)" = "enrolment kpm"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KE1/21")
check "... and afterwards does not know the KeID (404)" grep -q '^404 ' <<< "$reply"

# A replayed stale KeID costs the MEF one request, not one per attempt.
stale() {
    openssl s_client -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_2 -psk "$kpm_like" \
        -psk_identity "$KE1" < /dev/null > /dev/null 2>&1 || true
}
refused_before=$(count_log "$LAB/mef.log" "event=fetch-refused ke_id=$KE1 ")
stale
check "MAF asked the MEF about the stale KeID once and was refused" \
    wait_log "$LAB/maf.log" "event=fetch-failed ke_id=$KE1 status=404"
stale
stale
check "replays within 30 s are refused by the MAF without asking again" \
    test "$(count_log "$LAB/maf.log" "event=fetch-skipped ke_id=$KE1 reason=\"refused by the MEF recently\"")" = 2
check "... so the MEF saw exactly one more request" \
    test "$(count_log "$LAB/mef.log" "event=fetch-refused ke_id=$KE1 ")" = $((refused_before + 1))

# The device re-provisions and reconnects.
out=$(enrolee connect 2>> "$LAB/enrolee.log")
KE2=$(device_ke_id)
check "device re-provisioned because its key expired" grep -q "event=provisioning .*reason=expired" "$LAB/enrolee.log"
check "with a new KeID" test -n "$KE2" -a "$KE2" != "$KE1"
check "and is authenticated by the MAF again" grep -q "authenticated $KE2 until" <<< "$out"
check "device token holds only the new enrolment" test "$(kinds_on enrolee)" = "ke km kpm"

# Graceful shutdown.
mef_pid=$(cat "$LAB/mef.pid") maf_pid=$(cat "$LAB/maf.pid")
bash "$LABSH" stop "$LAB" > /dev/null
check "SIGTERM: MEF logged stopped and exited" grep -q "event=stopped" "$LAB/mef.log"
check "SIGTERM: MAF logged stopped and exited" grep -q "event=stopped" "$LAB/maf.log"
refuse "MEF process gone" running "$mef_pid"
refuse "MAF process gone" running "$maf_pid"
check "no log line carries the Kpm" bash -c "! grep -q -i -F \"\$(cat '$M2M_KPM_HEX_FILE')\" '$LAB'/*.log"
finish
