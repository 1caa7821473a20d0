#!/usr/bin/env bash
# Revocation and reload. An Enrolee removed from mef.json and the MEF sent SIGHUP: the MEF
# erases its configuration and Ke, refuses its bootstrap and /fetchCredentials for its
# KeID; its Km erased at the MAF by the admin CLI (another process) closes the connection
# still open on it at the MAF's next sweep. A broken file is refused at reload and the
# running configuration stays; settings that need a restart are reported. An absolute
# Enrolment Expiry already past makes only that Enrolee unenrollable, at start and reload.
. "$(dirname "$0")/lib.sh"
e2e_lab_init revoke --expiry 600
set_json "$M2M_MAF_CONFIG" maf sweep_interval 86400
set_json "$M2M_MEF_CONFIG" mef sweep_interval 86400

# enrolees_of MEF-CONFIG: what the lab listed, kept aside; set_enrolees JSON: the whole list.
LAB_ENTRY=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["enrolees"][0]))' "$M2M_MEF_CONFIG")
PAST_ENTRY="{\"kpm_id\": \"kpm-past\", \"enrolee_id\": \"//sp.example.com/cse1/Cpast\", \"enrolment_target\": \"$M2M_MAF_ID\", \"enrolment_expiry\": \"20200101T000000\"}"
with_expiry() { python3 -c 'import json,sys; e=json.loads(sys.argv[1]); e["enrolment_expiry"]=sys.argv[2]; print(json.dumps(e))' "$1" "$2"; }
set_enrolees() { set_json "$M2M_MEF_CONFIG" - enrolees "$1"; }

# ---- an Enrolee whose absolute Enrolment Expiry has passed does not stop the MEF ----
set_enrolees "[$LAB_ENTRY, $PAST_ENTRY]"
bash "$LABSH" start "$LAB" > /dev/null
check "the MEF started beside an Enrolee whose Enrolment Expiry has passed" \
    wait_log "$LAB/mef.log" "event=ready "
check "... and said so for that Enrolee only" \
    grep -q "event=enrolee-expired-config kpm_id=kpm-past .*enrolment_expiry=20200101T000000 .*at=start" "$LAB/mef.log"

# ---- a broken file at reload: refused, the running configuration stays ----
cp "$M2M_MEF_CONFIG" "$LAB/mef.good.json"
set_enrolees "[$PAST_ENTRY]" # would revoke the lab's Enrolee...
set_json "$M2M_MEF_CONFIG" mef sweep_intervall 5 # ...but the file is refused whole
check "SIGHUP with a broken file is answered" reload_now mef
check "... by reload-failed with the loader's reason" \
    grep -q 'event=reload-failed config=.* reason="config .*mef.sweep_intervall: unknown field"' <<< "$(last_reload mef)"
check "the MEF is still running" alive mef
check "... and its Enrolee was not revoked" test "$(count_log "$LAB/mef.log" "event=revoked ")" -eq 0
printf '{"pkcs11": ' > "$M2M_MEF_CONFIG" # not even JSON
check "a file that is not JSON is refused too" reload_now mef
check "... naming the line" grep -q 'event=reload-failed .*reason="config .*line ' <<< "$(last_reload mef)"
cp "$LAB/mef.good.json" "$M2M_MEF_CONFIG"

# ---- the device enrols and holds a connection at the MAF ----
enrolee connect --hold 300 > "$LAB/hold.out" 2> "$LAB/enrolee-hold.log" &
HOLD=$!
E2E_EXTRA_PIDS+=("$HOLD")
check "the device enrolled under the running configuration" \
    wait_log "$LAB/mef.log" "event=enrolled kpm_id=$M2M_KPM_ID "
KEID=$(grep -o "event=enrolled kpm_id=$M2M_KPM_ID ke_id=[^ ]*" "$LAB/mef.log" | tail -1 | sed 's/.*ke_id=//')
check "... and holds a connection at the MAF" wait_log "$LAB/maf.log" "event=handshake-ok ke_id=$KEID "

# ---- remove it from mef.json, SIGHUP ----
set_enrolees "[$PAST_ENTRY]"
check "SIGHUP reloads the MEF" reload_now mef
check "... reloaded" grep -q "event=reloaded " <<< "$(last_reload mef)"
check "the removed Enrolee was revoked: configuration and Ke erased" \
    grep -q "event=revoked kpm_id=$M2M_KPM_ID enrolee_id=$M2M_ENROLEE_ID records=2 at=reload" "$LAB/mef.log"
check "... the MEF token keeps only the Kpm (the device's factory credential)" \
    test "$(kinds_on mef)" = "kpm"
check "the past-expiry Enrolee is reported at reload as well" \
    grep -q "event=enrolee-expired-config kpm_id=kpm-past .*at=reload" "$LAB/mef.log"
check "the held connection was not dropped by the reload" running "$HOLD"

# ---- refused at bootstrap and at /fetchCredentials ----
refuse "the revoked device's bootstrap fails" enrolee bootstrap
check "... refused in the handshake as not configured" \
    wait_log "$LAB/mef.log" "event=rejected-unconfigured kpm_id=$M2M_KPM_ID reason=not-configured"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KEID/21")
check "/fetchCredentials for its KeID is refused (404)" grep -q '^404 ' <<< "$reply"

# ---- the operator erases its Km at the MAF: the held connection closes ----
check "the connection on the Km is still open" running "$HOLD"
check "the admin CLI erases the Km on the MAF token (another process)" \
    m2mhsm_on maf erase --key-id "$KEID"
check "the MAF's sweep (SIGUSR1) learns of it" sweep_now maf
check "... and closes the connection that ran on the erased Km" \
    wait_log "$LAB/maf.log" "event=closed-erased ke_id=$KEID "
check "the device saw the association end" wait_gone "$HOLD" 30
check "... closed by the target" grep -q "event=closed-by-target" "$LAB/enrolee-hold.log"

# ---- the MAF: reloadable settings apply, restart-only ones are reported ----
set_json "$M2M_MAF_CONFIG" maf max_lifetime 3600
set_json "$M2M_MAF_CONFIG" maf listen "\"127.0.0.1:$(free_port)\""
check "SIGHUP reloads the MAF" reload_now maf
check "... max_lifetime is in force" wait_log "$LAB/maf.log" "event=reconfigured max_lifetime=3600 "
check "... a new listen address is reported as needing a restart" \
    grep -q "event=restart-needed config=.* fields=maf.listen" "$LAB/maf.log"
check "... reloaded" grep -q "event=reloaded " <<< "$(last_reload maf)"
set_json "$M2M_MAF_CONFIG" maf max_lifetime -1
check "a MAF file with a bad value is answered" reload_now maf
check "... by reload-failed naming the field" \
    grep -q 'event=reload-failed .*reason=".*maf.max_lifetime' <<< "$(last_reload maf)"
check "the MAF is still running" alive maf

# ---- the Enrolee configured again, with a past absolute expiry: still unenrollable ----
set_enrolees "[$(with_expiry "$LAB_ENTRY" 20200101T000000)]"
check "reload with the Enrolee's expiry in the past" reload_now mef
check "... it is reported, not configured" \
    grep -q "event=enrolee-expired-config kpm_id=$M2M_KPM_ID .*at=reload" "$LAB/mef.log"
refuse "... and the device cannot enrol" enrolee bootstrap
set_enrolees "[$(with_expiry "$LAB_ENTRY" 600), $PAST_ENTRY]"
check "reload with a valid expiry" reload_now mef
check "... configures it again" wait_log "$LAB/mef.log" "event=configured kpm_id=$M2M_KPM_ID "
out=$(enrolee connect 2> "$LAB/enrolee.log")
check "the device enrols and connects again (the Kpm was kept)" grep -q "authenticated .* until" <<< "$out"

# ---- the operator's revocation (another process) at the MEF ----
KEID2=$(device_ke_id)
check "the admin CLI revokes the Enrolee on the MEF token, keeping its Kpm" \
    grep -q "revoked $M2M_KPM_ID: erased 2 record(s)$" <<< "$(m2mhsm_on mef enrolee revoke --kpm-id "$M2M_KPM_ID")"
check "... the MEF token keeps only the Kpm" test "$(kinds_on mef)" = "kpm"
n=$(count_log "$LAB/mef.log" "event=rejected-unconfigured kpm_id=$M2M_KPM_ID ")
refuse "the running MEF refuses the device's bootstrap at once" enrolee bootstrap
check "... in the handshake" \
    wait_count "$LAB/mef.log" "event=rejected-unconfigured kpm_id=$M2M_KPM_ID reason=not-configured" $((n + 1))
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KEID2/21")
check "... and /fetchCredentials for its new KeID (404)" grep -q '^404 ' <<< "$reply"
check "--erase-kpm takes the Kpm too" \
    grep -q "revoked $M2M_KPM_ID: erased 1 record(s) with its Kpm$" <<< "$(m2mhsm_on mef enrolee revoke --kpm-id "$M2M_KPM_ID" --erase-kpm)"

# No key or PIN in any log.
kpm=$(tr -d ' \n' < "$M2M_KPM_HEX_FILE")
check "no Kpm or PIN in the logs" \
    bash -c "! grep -qi -e '$kpm' -e '$(cat "$M2M_MEF_PIN_FILE")' -e '$(cat "$M2M_MAF_PIN_FILE")' '$LAB'/*.log"
finish
