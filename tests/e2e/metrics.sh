#!/usr/bin/env bash
# The servers' metrics (docs/architecture.md, "Metrics"), scraped with curl as Prometheus
# would: a device's enrolment and first connection move the counters of both servers, a
# refused handshake is counted by why it was refused, open connections show, the key gauges
# follow the token after a sweep, only GET /metrics is served, no identity appears, and
# promtool accepts both endpoints.
. "$(dirname "$0")/lib.sh"
command -v promtool > /dev/null ||
    { echo "not ok - promtool is not installed (scripts/deps.sh installs it)"; exit 1; }
# Keys that expire within the hour, so that m2m_keys_expiring{within="3600"} has them.
e2e_lab metrics --expiry 1800

port_of() { if [ "$1" = mef ]; then echo "$M2M_MEF_METRICS_PORT"; else echo "$M2M_MAF_METRICS_PORT"; fi; }
scrape() { curl -sS --max-time 10 "http://127.0.0.1:$(port_of "$1")/metrics"; }
# value mef|maf SAMPLE: one sample's value (SAMPLE as written: m2m_keys{kind="ke"}).
value() { scrape "$1" | awk -v s="$2" '$1 == s { print $2 }'; }
# is mef|maf SAMPLE OP N: the sample exists and compares to N (OP: -eq, -ge).
is() {
    local v
    v=$(value "$1" "$2")
    [[ $v =~ ^[0-9]+$ ]] || return 1
    case $3 in
        -eq) [ "$v" -eq "$4" ] ;;
        -ge) [ "$v" -ge "$4" ] ;;
        *) return 2 ;;
    esac || { echo "# $1 $2 = $v" >&2; return 1; }
}
# Counters move when the event that moves them is over: wait for the figure, not for time.
becomes() { wait_until 30 "$(printf '%q ' is "$@")"; }

check "MEF metrics before any device: no enrolment, no handshake" \
    is mef 'm2m_enrolments_total{transport="tls"}' -eq 0
check "MAF metrics before any device: no handshake" is maf 'm2m_handshakes_total{result="ok"}' -eq 0
check "MAF metrics do not count enrolments (the MEF's job)" \
    bash -c "! curl -sS 'http://127.0.0.1:$M2M_MAF_METRICS_PORT/metrics' | grep -q m2m_enrolments_total"

# 1. A device enrols and connects: the MAF fetches Km from the MEF inside the handshake.
out=$(enrolee connect --message hello 2> "$LAB/enrolee.log")
KE1=$(device_ke_id)
check "device enrolled and connected" grep -q "authenticated $KE1 until" <<< "$out"
check "MEF: m2m_enrolments_total{transport=\"tls\"} is 1" \
    becomes mef 'm2m_enrolments_total{transport="tls"}' -eq 1
check "MEF: no DTLS enrolment yet" is mef 'm2m_enrolments_total{transport="dtls"}' -eq 0
check "MEF: the bootstrap handshake counted ok" becomes mef 'm2m_handshakes_total{result="ok"}' -eq 1
check "MEF: one fetch answered ok (Km to the MAF)" becomes mef 'm2m_fetches_total{result="ok"}' -eq 1
check "MEF: ... and timed" is mef 'm2m_fetch_seconds_count' -eq 1
check "MEF: Ke stored and Km derived on the token, each call timed" \
    is mef 'm2m_token_call_seconds_count{op="store"}' -ge 1
check "MEF: ... derive" is mef 'm2m_token_call_seconds_count{op="derive"}' -eq 1
check "MAF: m2m_handshakes_total{result=\"ok\"} is 1" \
    becomes maf 'm2m_handshakes_total{result="ok"}' -eq 1
check "MAF: one fetch made, ok" is maf 'm2m_fetches_total{result="ok"}' -eq 1
check "MAF: ... timed in m2m_fetch_seconds" is maf 'm2m_fetch_seconds_count' -eq 1
check "MAF: ... within 10 s" is maf 'm2m_fetch_seconds_bucket{le="10"}' -eq 1
check "MAF: Km stored on the token, timed" is maf 'm2m_token_call_seconds_count{op="store"}' -eq 1
for s in mef maf; do
    check "$s: no token error" \
        bash -c "! curl -sS 'http://127.0.0.1:$(port_of $s)/metrics' | grep -E '^m2m_token_errors_total' | grep -qv ' 0\$'"
done

# 2. The key gauges are recomputed by the sweep (and at start), never by a scrape.
check "MEF: m2m_keys as of start: Kpm and configuration, no Ke yet" \
    is mef 'm2m_keys{kind="ke"}' -eq 0
sweep_now mef
sweep_now maf
check "MEF: after a sweep m2m_keys{kind=\"ke\"} is 1" is mef 'm2m_keys{kind="ke"}' -eq 1
# The lab's two devices: the MAF's and the Enrolee B's, each a Kpm and a configuration.
check "MEF: ... kpm 2" is mef 'm2m_keys{kind="kpm"}' -eq 2
check "MEF: ... enrolment 2" is mef 'm2m_keys{kind="enrolment"}' -eq 2
check "MEF: the Ke (1800 s) expires within the hour" is mef 'm2m_keys_expiring{within="3600"}' -eq 1
check "MAF: after a sweep m2m_keys{kind=\"km\"} is 1" is maf 'm2m_keys{kind="km"}' -eq 1
check "MAF: the Km expires within the hour" is maf 'm2m_keys_expiring{within="3600"}' -eq 1
check "MAF: the sweep was timed" is maf 'm2m_token_call_seconds_count{op="sweep"}' -eq 1

# 3. An open association is an open connection.
"$M2M_BIN/m2m-enrolee" --config "$M2M_ENROLEE_CONFIG" connect --hold 60 \
    > "$LAB/hold.out" 2> "$LAB/hold.log" & # the program itself, so that $! is its pid
hold=$!
E2E_EXTRA_PIDS+=("$hold")
# The gauge counts a connection from accept; the handshake is counted when it completes, so
# wait for the device to have read the MAF's greeting (sent after it) before ending it.
check "the device holds an authenticated association" wait_log "$LAB/hold.out" "authenticated"
check "MAF: m2m_connections_open is 1 while the device holds its association" \
    becomes maf m2m_connections_open -eq 1
kill -TERM "$hold"
wait "$hold" 2> /dev/null || true
check "MAF: ... and 0 once it has gone" becomes maf m2m_connections_open -eq 0
check "MAF: that handshake counted ok too" becomes maf 'm2m_handshakes_total{result="ok"}' -eq 2

# 4. Refused handshakes, counted by why.
wrong=$(openssl rand -hex 32)
openssl s_client -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_2 -psk "$wrong" -psk_identity "$KE1" \
    < /dev/null > "$LAB/wrong-key.out" 2>&1 || true
check "MAF: the right KeID with a wrong key counts as failed" \
    becomes maf 'm2m_handshakes_total{result="failed"}' -eq 1
check "... and not as unknown" is maf 'm2m_handshakes_total{result="unknown"}' -eq 0
unknown_ke="$(openssl rand -hex 16 | tr a-f A-F)@$M2M_MEF_FQDN"
openssl s_client -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_2 -psk "$wrong" \
    -psk_identity "$unknown_ke" < /dev/null > "$LAB/unknown.out" 2>&1 || true
check "MAF: a KeID the MEF does not know counts as unknown" \
    becomes maf 'm2m_handshakes_total{result="unknown"}' -eq 1
check "MAF: ... after a fetch the MEF refused" is maf 'm2m_fetches_total{result="refused"}' -eq 1
check "MEF: ... which it counts as refused" becomes mef 'm2m_fetches_total{result="refused"}' -eq 1
check "MAF: still one failed handshake" is maf 'm2m_handshakes_total{result="failed"}' -eq 1
openssl s_client -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_2 -psk "$wrong" \
    -psk_identity "$unknown_ke" < /dev/null > /dev/null 2>&1 || true
check "MAF: a replay within 30 s is not fetched again: skipped" \
    becomes maf 'm2m_fetches_total{result="skipped"}' -eq 1
openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" -tls1_2 -psk "$wrong" \
    -psk_identity "$M2M_KPM_ID" < /dev/null > /dev/null 2>&1 || true
check "MEF: the right KpmID with a wrong Kpm counts as failed" \
    becomes mef 'm2m_handshakes_total{result="failed"}' -eq 1
openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" -tls1_2 -psk "$wrong" \
    -psk_identity kpm-nobody < /dev/null > /dev/null 2>&1 || true
check "MEF: an unknown KpmID counts as unknown" becomes mef 'm2m_handshakes_total{result="unknown"}' -eq 1
check "MEF: still one enrolment" is mef 'm2m_enrolments_total{transport="tls"}' -eq 1

# 5. A DTLS enrolment is counted under its transport.
python3 - "$M2M_ENROLEE_CONFIG" "$LAB/enrolee-dtls.json" "$M2M_MEF_DTLS_PORT" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["enrolee"]["mef_uri"] = "dtls://127.0.0.1:" + sys.argv[3]
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
"$M2M_BIN/m2m-enrolee" --config "$LAB/enrolee-dtls.json" bootstrap 2>> "$LAB/enrolee.log" || true
check "MEF: m2m_enrolments_total{transport=\"dtls\"} is 1" \
    becomes mef 'm2m_enrolments_total{transport="dtls"}' -eq 1

# 6. Only GET /metrics; nothing secret; a format Prometheus accepts.
for s in mef maf; do
    port=$(port_of "$s")
    check "$s: GET / is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" = 404
    check "$s: POST /metrics is 405" \
        test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/metrics")" = 405
    check "$s: served as text format 0.0.4" bash -c \
        "curl -sS -D - -o /dev/null 'http://127.0.0.1:$port/metrics' | grep -qi '^content-type: text/plain; version=0.0.4'"
    scrape "$s" > "$LAB/$s.metrics"
    check "$s: every family has # HELP and # TYPE" bash -c \
        "test \$(grep -c '^# HELP m2m_' '$LAB/$s.metrics') -ge 9 && test \$(grep -c '^# HELP ' '$LAB/$s.metrics') = \$(grep -c '^# TYPE ' '$LAB/$s.metrics')"
    for secret in "$KE1" "${KE1%@*}" "$unknown_ke" "$M2M_KPM_ID" "$M2M_ENROLEE_ID" "$M2M_MAF_ID"; do
        refuse "$s: the scrape does not name $secret" grep -q -F -- "$secret" "$LAB/$s.metrics"
    done
    check "$s: promtool check metrics accepts it" \
        bash -c "promtool check metrics < '$LAB/$s.metrics' > '$LAB/$s.promtool' 2>&1"
    echo "# promtool check metrics ($s): exit 0, output: $(cat "$LAB/$s.promtool")"
done

# 7. The address is checked with the configuration: a bad one stops the server at once.
cp "$M2M_MAF_CONFIG" "$LAB/maf-bad.json"
set_json "$LAB/maf-bad.json" maf metrics '"127.0.0.1:0"'
refuse "m2m-maf refuses metrics port 0" "$M2M_BIN/m2m-maf" --config "$LAB/maf-bad.json"
check "... saying which field" \
    bash -c "'$M2M_BIN/m2m-maf' --config '$LAB/maf-bad.json' 2>&1 | grep -q 'maf.metrics'"
cp "$M2M_MEF_CONFIG" "$LAB/mef-bad.json"
set_json "$LAB/mef-bad.json" mef metrics '"127.0.0.1:65536"'
refuse "m2m-mef refuses metrics port 65536" \
    "$M2M_BIN/m2m-mef" --config "$LAB/mef-bad.json"
finish
