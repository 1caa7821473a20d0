#!/usr/bin/env bash
# The services as long-running processes on one token directory: a restarted MAF, and a
# second MAF process on the same token, serve the device from the token without fetching Km
# again, and see each other's (and the admin CLI's) writes; the MEF's /fetchCredentials
# refuses every request that is not the Enrolment Target asking for its SUID and answers the
# one that is with the device's Km; garbage, oversized identities, malformed HTTP and
# connections that never finish their handshake leave both servers up and serving; no log
# line carries the Kpm, a PIN or a credential.
. "$(dirname "$0")/lib.sh"
e2e_lab services --expiry 600

# Peers we did not write. slow.py idle|drip PORT LIMIT: connect and send nothing (idle), or a
# TLS ClientHello one byte every 2 s (drip); succeeds if the server closes the connection
# within LIMIT seconds.
cat > "$LAB/slow.py" <<'EOF'
import socket, ssl, sys, time
mode, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
hello = b""
if mode == "drip":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        ctx.wrap_bio(i, o).do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = o.read()
s = socket.create_connection(("127.0.0.1", port), timeout=5)
start, sent = time.monotonic(), 0
while time.monotonic() - start < limit:
    if hello and sent < len(hello):
        s.send(hello[sent:sent + 1])
        sent += 1
    s.settimeout(2 if hello else limit - (time.monotonic() - start))
    try:
        data = s.recv(100)
    except socket.timeout:
        continue
    except ConnectionResetError:
        data = b""
    print("%s %d: closed by the server after %.1f s (%d bytes sent)%s"
          % (mode, port, time.monotonic() - start, sent, " with data" if data else ""))
    sys.exit(1 if data else 0)
print("%s %d: still open after %.1f s (%d bytes sent)" % (mode, port, limit, sent))
sys.exit(1)
EOF
# pskid.py PORT N: a TLS 1.2 PSK handshake whose ClientKeyExchange carries a psk_identity of
# N times "Z" (openssl s_client refuses to send more than 128 bytes); succeeds if the server
# answers with an alert or closes, fails if the handshake goes on.
cat > "$LAB/pskid.py" <<'EOF'
import os, socket, struct, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
def record(t, body, v=b"\x03\x03"): return bytes([t]) + v + struct.pack(">H", len(body)) + body
def handshake(t, body): return bytes([t]) + struct.pack(">I", len(body))[1:] + body
suites = (0x00AE, 0x00A8, 0xC0A8)  # PSK-AES128-CBC-SHA256, -GCM-SHA256, -CCM8
hello = (b"\x03\x03" + os.urandom(32) + b"\x00" + struct.pack(">H", 2 * len(suites)) +
         b"".join(struct.pack(">H", c) for c in suites) + b"\x01\x00" +
         struct.pack(">H", 4) + b"\x00\x17\x00\x00")  # extended_master_secret
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(record(22, handshake(1, hello), b"\x03\x01"))
buf = b""
def records():
    global buf
    while True:
        while len(buf) >= 5 and len(buf) >= 5 + struct.unpack(">H", buf[3:5])[0]:
            n = struct.unpack(">H", buf[3:5])[0]
            r, buf = buf[:5 + n], buf[5 + n:]
            yield r[0], r[5:]
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        if not data:
            yield None, b""
            return
        buf += data
flight = b""
for t, body in records():  # ServerHello ... ServerHelloDone (14)
    if t != 22:
        print("# no ServerHelloDone:", t, body.hex())
        sys.exit(1)
    flight += body
    i, types = 0, []
    while i + 4 <= len(flight):
        types.append(flight[i])
        i += 4 + struct.unpack(">I", b"\0" + flight[i + 1:i + 4])[0]
    if 14 in types:
        break
ident = b"Z" * n
s.sendall(record(22, handshake(16, struct.pack(">H", len(ident)) + ident)))
for t, body in records():
    if t not in (None, 21):
        print("# the handshake went on: record type %d" % t)
    sys.exit(0 if t in (None, 21) else 1)
EOF

# The MAF the way lab.sh starts it: start_maf CONFIG LOG PIDFILE; returns once it is ready
# (it logs event=ready after it listens).
start_maf() {
    local cfg=$1 log=$2 pidfile=$3 n
    n=$(count_log "$log" "event=ready")
    token_env maf
    env "${TOKEN_ENV[@]}" setsid "$M2M_BIN/m2m-maf" --config "$cfg" < /dev/null >> "$log" 2>&1 &
    echo "$!" > "$pidfile"
    wait_count "$log" "event=ready" $((${n:-0} + 1))
}
enrolee2() { on_token enrolee "$M2M_BIN/m2m-enrolee" --config "$LAB/enrolee2.json" "$@"; }
mef_log=$LAB/mef.log maf_log=$LAB/maf.log maf2_log=$LAB/maf2.log

# Connections that never complete a handshake run in the background meanwhile: the MEF's
# handshake timeout is 10 s on its bootstrap and HTTPS ports.
python3 "$LAB/slow.py" idle "$M2M_MEF_PORT" 12 > "$LAB/slow-idle-tls.out" 2>&1 &
slow_idle_tls=$!
python3 "$LAB/slow.py" idle "$M2M_MEF_HTTPS_PORT" 12 > "$LAB/slow-idle-https.out" 2>&1 &
slow_idle_https=$!
python3 "$LAB/slow.py" drip "$M2M_MEF_PORT" 13 > "$LAB/slow-drip-tls.out" 2>&1 &
slow_drip_tls=$!
python3 "$LAB/slow.py" drip "$M2M_MEF_HTTPS_PORT" 13 > "$LAB/slow-drip-https.out" 2>&1 &
slow_drip_https=$!
E2E_EXTRA_PIDS+=("$slow_idle_tls" "$slow_idle_https" "$slow_drip_tls" "$slow_drip_https")

# 1. A restarted MAF serves the device from its token.
out=$(enrolee connect 2> "$LAB/enrolee.log") || true
KE1=$(device_ke_id)
check "device enrolled and connected" grep -q "authenticated $KE1 until" <<< "$out"
check "MAF fetched Km on that first connection" wait_log "$maf_log" "event=fetched ke_id=$KE1"
old=$(cat "$LAB/maf.pid")
kill -TERM "$old"
check "SIGTERM: the MAF exits" wait_gone "$old" 10
check "... after logging stopped" grep -q "event=stopped" "$maf_log"
check "MAF restarted on the same token and is ready" start_maf "$M2M_MAF_CONFIG" "$maf_log" "$LAB/maf.pid"
# (M2M_MAF_PORT listens again: event=ready comes after event=listening)
out=$(enrolee connect 2>> "$LAB/enrolee.log") || true
check "device connects to the restarted MAF with the same KeID" grep -q "authenticated $KE1 until" <<< "$out"
check "... which completed a new handshake" wait_count "$maf_log" "event=handshake-ok ke_id=$KE1" 2
check "... with Km from its token: still one fetch at the MAF" test "$(count_log "$maf_log" "event=fetched")" = 1
check "... and one at the MEF" test "$(count_log "$mef_log" "event=fetched ke_id=$KE1")" = 1
# The restarted MAF's handshake timeout is 15 s: idle and dripping connections, meanwhile.
python3 "$LAB/slow.py" idle "$M2M_MAF_PORT" 17 > "$LAB/slow-idle-maf.out" 2>&1 &
slow_idle_maf=$!
python3 "$LAB/slow.py" drip "$M2M_MAF_PORT" 17 > "$LAB/slow-drip-maf.out" 2>&1 &
slow_drip_maf=$!
E2E_EXTRA_PIDS+=("$slow_idle_maf" "$slow_drip_maf")

# 2. A second MAF process on the same token directory and lock file, on another port.
port2=$(free_port) metrics2=$(free_port) dtls2=$(free_port)
cp "$M2M_MAF_CONFIG" "$LAB/maf2.json"
set_json "$LAB/maf2.json" maf listen "\"127.0.0.1:$port2\""
set_json "$LAB/maf2.json" maf metrics "\"127.0.0.1:$metrics2\""
set_json "$LAB/maf2.json" maf listen_dtls "\"127.0.0.1:$dtls2\""
cp "$M2M_ENROLEE_CONFIG" "$LAB/enrolee2.json"
set_json "$LAB/enrolee2.json" enrolee target_uri "\"tls://127.0.0.1:$port2\""
cp "$M2M_ENROLEE_CONFIG" "$LAB/enrolee-dtls.json"
set_json "$LAB/enrolee-dtls.json" enrolee mef_uri "\"dtls://127.0.0.1:$M2M_MEF_DTLS_PORT\""
check "a second MAF starts on the same token and lock file" start_maf "$LAB/maf2.json" "$maf2_log" "$LAB/maf2.pid"
maf2=$(cat "$LAB/maf2.pid")
E2E_EXTRA_PIDS+=("$maf2")
out=$(enrolee2 connect 2>> "$LAB/enrolee.log") || true
check "device connects to the second MAF" grep -q "authenticated $KE1 until" <<< "$out"
check "... which completed the handshake" wait_log "$maf2_log" "event=handshake-ok ke_id=$KE1"
check "... with the Km the first MAF fetched: no fetch at the second" \
    test "$(count_log "$maf2_log" "event=fetched")" = 0
check "... nor at the MEF" test "$(count_log "$mef_log" "event=fetched ke_id=$KE1")" = 1

# A fresh enrolment, first seen by the second MAF.
m2mhsm_on enrolee erase --key-id "$KE1" > /dev/null || true
check "device's keys erased (admin CLI)" test "$(kinds_on enrolee)" = "kpm"
out=$(enrolee2 connect 2>> "$LAB/enrolee.log") || true
KE2=$(device_ke_id)
check "device re-enrolled with a new KeID" test -n "$KE2" -a "$KE2" != "$KE1"
check "... and connected to the second MAF" grep -q "authenticated $KE2 until" <<< "$out"
check "the second MAF fetched the new Km" wait_log "$maf2_log" "event=fetched ke_id=$KE2"
out=$(enrolee connect 2>> "$LAB/enrolee.log") || true
check "device connects to the first MAF with the new KeID" grep -q "authenticated $KE2 until" <<< "$out"
check "... which completed the handshake" wait_log "$maf_log" "event=handshake-ok ke_id=$KE2"
check "... with the Km the other process wrote: no fetch at the first MAF" \
    test "$(count_log "$maf_log" "event=fetched ke_id=$KE2")" = 0
check "... one fetch at the MEF in all" test "$(count_log "$mef_log" "event=fetched ke_id=$KE2")" = 1
# An erase by a third process (the admin CLI) is seen at once by both.
m2mhsm_on maf erase --key-id "$KE2" > /dev/null || true
check "admin CLI erased Km from the MAF token" test "$(kinds_on maf)" = "km" # (KE1's is left)
out=$(enrolee connect 2>> "$LAB/enrolee.log") || true
check "after the erase the device still connects to the first MAF" grep -q "authenticated $KE2 until" <<< "$out"
check "... which fetched Km again instead of using a stale handle" \
    wait_log "$maf_log" "event=fetched ke_id=$KE2"
out=$(enrolee2 connect 2>> "$LAB/enrolee.log") || true
check "... and the second MAF serves the re-fetched Km" grep -q "authenticated $KE2 until" <<< "$out"
check "... without fetching it itself" test "$(count_log "$maf2_log" "event=fetched ke_id=$KE2")" = 1

# 3. /fetchCredentials/<KeID>/<SUID>: only the Enrolment Target, authenticated, for its SUID.
KE=$(device_ke_id)
reply=$(fetch_as other.example.com other.example.com "/fetchCredentials/$KE/21")
check "403 status:false for an authenticated originator that is not the Enrolment Target" \
    grep -q '^403 {"status":false,"errorString":"[^"]*Enrolment Target' <<< "$reply"
reply=$(fetch_as other.example.com "$M2M_MAF_ID" "/fetchCredentials/$KE/21")
check "403 for an X-M2M-Origin that the client certificate does not prove" \
    grep -q '^403 {"status":false,"errorString":"[^"]*not authenticated' <<< "$reply"
check "no client certificate: the TLS handshake fails, no HTTP status" test "$(
    curl -sS --max-time 10 --cacert "$M2M_CA_CERT" -o /dev/null -w '%{http_code}' \
        --resolve "$M2M_MEF_FQDN:$M2M_MEF_HTTPS_PORT:127.0.0.1" -H "X-M2M-Origin: $M2M_MAF_ID" \
        "https://$M2M_MEF_FQDN:$M2M_MEF_HTTPS_PORT/fetchCredentials/$KE/21" 2> /dev/null)" = 000
reply=$(fetch_as "$M2M_MAF_ID" "" "/fetchCredentials/$KE/21" -H "X-M2M-Origin:")
check "400 without X-M2M-Origin" grep -q '^400 {"status":false,' <<< "$reply"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KE/23")
check "400 for an unknown SUID" grep -q '^400 {"status":false,"errorString":"unknown SUID' <<< "$reply"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KE/22")
check "400 for SUID 22 (Kpsa) asked by a MAF" grep -q '^400 {"status":false,' <<< "$reply"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/not-a-KeID@$M2M_MEF_FQDN/21")
check "400 for a malformed KeID" grep -q '^400 {"status":false,"errorString":"malformed KeID' <<< "$reply"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/00112233445566778899AABBCCDDEEFF@$M2M_MEF_FQDN/21")
check "404 for an unknown well-formed KeID" grep -q '^404 {"status":false,' <<< "$reply"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KE/21" -X POST)
check "405 for POST" grep -q '^405 {"status":false,' <<< "$reply"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/${KE%@*}@other.example.com/21")
check "404 for a KeID that names another MEF" grep -q '^404 {"status":false,' <<< "$reply"
reply=$(fetch_as "$M2M_MAF_ID" "$M2M_MAF_ID" "/fetchCredentials/$KE/21")
check "200 with status:true for the Enrolment Target asking for SUID 21" \
    grep -q '^200 {"status":true,' <<< "$reply"
body=${reply#* }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$body" "$1"; }
cred=$(field credential)
check "... a 44-character base64 credential of 32 bytes" python3 -c '
import base64,sys; c=sys.argv[1]; sys.exit(not (len(c) == 44 and len(base64.b64decode(c, validate=True)) == 32))' "$cred"
check "... lifetime is an m2m:timestamp" grep -qE '^[0-9]{8}T[0-9]{6}$' <<< "$(field lifetime)"
check "... equal to the expiry of the device's Km" test "$(field lifetime)" = "$(
    m2mhsm_on enrolee list --json | python3 -c 'import json,sys
print([r["expires"] for r in json.load(sys.stdin) if r["kind"] == "km"][-1])')"
check "... enroleeID is the device's" test "$(field enroleeID)" = "$M2M_ENROLEE_ID"
cred_hex=$(python3 -c 'import base64,sys; print(base64.b64decode(sys.argv[1]).hex())' "$cred" 2> /dev/null || true)
# The credential is the Km that the MAF and the device hold: it opens the MAF's TLS-PSK
# service under the KeID (openssl s_client as the device; the MAF echoes a line).
psk_out=$LAB/psk-km.out
session "$psk_out" --send ping -- openssl s_client -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_2 \
    -psk "${cred_hex:-00}" -psk_identity "$KE" -quiet -no_ign_eof
check "... and is Km: it authenticates to the MAF under the KeID" \
    grep -q "authenticated $KE until" "$psk_out"
check "MEF logged every refusal as fetch-refused" test "$(count_log "$mef_log" "event=fetch-refused")" -ge 9
check "no fetch-refused line carries anything like a credential" \
    bash -c "! grep 'event=fetch-refused' '$mef_log' | grep -q -E '[A-Za-z0-9+/]{43}='"

# 4. Bad input leaves the services up.
# junk PORT: 2000 random bytes over TCP; the server must close the connection.
junk() {
    head -c 2000 /dev/urandom | timeout 10 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=8)
s.sendall(sys.stdin.buffer.read())
try:
    sys.exit(1 if s.recv(100) else 0)
except ConnectionResetError:
    sys.exit(0)' "$1"
}
check "MEF bootstrap (TLS) closes on 2000 random bytes" junk "$M2M_MEF_PORT"
check "MEF HTTPS closes on 2000 random bytes" junk "$M2M_MEF_HTTPS_PORT"
check "MAF closes on 2000 random bytes" junk "$M2M_MAF_PORT"
check "MEF logged the failed bootstrap" grep -q "event=bootstrap-failed .*reason=\"handshake failed" "$mef_log"
check "MAF logged the failed handshake" grep -q "event=handshake-failed .*reason=\"handshake failed" "$maf_log"
check "random datagrams, some that look like DTLS records, to the MEF's DTLS port" python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in (1, 13, 200, 1400, 2000):
    s.sendto(os.urandom(n), ("127.0.0.1", int(sys.argv[1])))
    s.sendto(b"\x16\xfe\xfd" + os.urandom(n), ("127.0.0.1", int(sys.argv[1])))
    s.sendto(b"\x16\xfe\xfd\x00\x00" + os.urandom(6) + b"\x07\xd0\x01" + os.urandom(n), ("127.0.0.1", int(sys.argv[1])))' \
    "$M2M_MEF_DTLS_PORT"
kpm_like=$(openssl rand -hex 32)
check "MEF DTLS still answers a ClientHello (after the cookie exchange)" sh -c \
    "timeout 10 openssl s_client -dtls1_2 -connect 127.0.0.1:$M2M_MEF_DTLS_PORT -psk $kpm_like -psk_identity $M2M_KPM_ID < /dev/null 2>&1 | grep -q 'alert handshake failure'"
check "MEF bootstrap refuses a wrong Kpm for the KpmID (bad_record_mac)" sh -c \
    "timeout 10 openssl s_client -connect 127.0.0.1:$M2M_MEF_PORT -tls1_2 -psk $kpm_like -psk_identity $M2M_KPM_ID < /dev/null 2>&1 | grep -q 'alert bad record mac'"
check "MAF refuses a wrong Km for the device's KeID (bad_record_mac)" sh -c \
    "timeout 10 openssl s_client -connect 127.0.0.1:$M2M_MAF_PORT -tls1_2 -psk $kpm_like -psk_identity $KE < /dev/null 2>&1 | grep -q 'alert bad record mac'"
hello_and_go() {
    python3 -c '
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
try: ctx.wrap_bio(i, o).do_handshake()
except ssl.SSLWantReadError: pass
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5); s.sendall(o.read()); s.close()' "$1"
}
check "a ClientHello, then a disconnect, at the MEF's bootstrap port" hello_and_go "$M2M_MEF_PORT"
check "a ClientHello, then a disconnect, at the MEF's HTTPS port" hello_and_go "$M2M_MEF_HTTPS_PORT"
check "a ClientHello, then a disconnect, at the MAF" hello_and_go "$M2M_MAF_PORT"
for n in 120 256 300 1000; do
    check "MEF refuses a $n-byte psk_identity" python3 "$LAB/pskid.py" "$M2M_MEF_PORT" "$n"
    check "MAF refuses a $n-byte psk_identity" python3 "$LAB/pskid.py" "$M2M_MAF_PORT" "$n"
done
check "MEF logged the long identity cut short" wait_log "$mef_log" "kpm_id=Z{40,79}(\.\.\.)?( |$)"
check "MAF logged the long identity cut short" wait_log "$maf_log" "ke_id=Z{40,79}(\.\.\.)?( |$)"
check "no log line carries an identity of 80 characters or more" bash -c "! grep -q -E 'Z{80}' '$LAB'/*.log"
# A psk_identity that would forge a log line: a newline, then an event and fields of its own.
forged=$'\nevent=enrolled kpm_id=forged ke_id=forged'
enrolled=$(count_log "$mef_log" "event=enrolled")
for side in "MEF $M2M_MEF_PORT $mef_log kpm_id" "MAF $M2M_MAF_PORT $maf_log ke_id"; do
    read -r name port log key <<< "$side"
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -tls1_2 -psk "$kpm_like" \
        -psk_identity "$M2M_KPM_ID$forged" < /dev/null > /dev/null 2>&1 || true
    check "$name logged the forging psk_identity as one quoted value" wait_log "$log" \
        "event=rejected-unknown $key=\"$M2M_KPM_ID\\\\x0aevent\\\\x3denrolled kpm_id\\\\x3dforged "
    check "... which began no line of its own" bash -c "! grep -q '^event=' '$log'"
    check "... with no field of the identity's own" bash -c "! grep -q -E '(^| )(kpm|ke)_id=forged' '$log'"
done
check "grep event=enrolled counts no forged enrolment" \
    test "$(count_log "$mef_log" "event=enrolled")" = "$enrolled"

# Malformed HTTP over mutually authenticated TLS to the MEF: 4xx or closed, never a hang.
mint_cert "$M2M_MAF_ID"
# http_refused FILE: send FILE; the MEF answers 4xx and closes, or just closes.
http_refused() {
    local reply rc=0
    reply=$(timeout 10 openssl s_client -connect "127.0.0.1:$M2M_MEF_HTTPS_PORT" \
        -servername "$M2M_MEF_FQDN" -CAfile "$M2M_CA_CERT" -cert "$CERT" -key "$KEY" -quiet \
        < "$1" 2> /dev/null) || rc=$?
    [ "$rc" != 124 ] || { echo "# the MEF kept the connection open" >&2; return 1; }
    [ -z "$reply" ] || grep -q -E '^HTTP/1\.[01] 4[0-9]{2} ' <<< "$reply"
}
printf 'GARBAGE\r\n\r\n' > "$LAB/http-garbage"
check "MEF HTTPS: 'GARBAGE' is a 400 or a close" http_refused "$LAB/http-garbage"
printf 'GET /fetchCredentials/%s/21 HTTP/1.1\r\nHost: %s\r\nX-M2M-Origin: %s\r\nX-Big: %s\r\n\r\n' \
    "$KE" "$M2M_MEF_FQDN" "$M2M_MAF_ID" "$(head -c 9000 /dev/zero | tr '\0' a)" > "$LAB/http-bighdr"
check "MEF HTTPS: a 9000-byte header is refused" http_refused "$LAB/http-bighdr"
{
    printf 'GET /fetchCredentials/%s/21 HTTP/1.1\r\nHost: %s\r\n' "$KE" "$M2M_MEF_FQDN"
    for ((i = 0; i < 400; i++)); do printf 'X-H%d: %s\r\n' "$i" bbbbbbbbbbbbbbbbbbbbbbbb; done
    printf '\r\n'
} > "$LAB/http-manyhdr"
check "MEF HTTPS: 400 headers (13 KiB) are refused" http_refused "$LAB/http-manyhdr"
printf 'GET /fetchCredentials/%s/21 HTTP/1.1\r\nHost: %s\r\n\r\n' \
    "$(head -c 20000 /dev/zero | tr '\0' a)" "$M2M_MEF_FQDN" > "$LAB/http-longuri"
check "MEF HTTPS: a 20000-byte request line is refused" http_refused "$LAB/http-longuri"

# The connections that never completed a handshake (started at the top).
check "MEF bootstrap closes an idle connection (no ClientHello) within its 10 s timeout" \
    wait "$slow_idle_tls"
check "... and logged the handshake timeout" grep -q 'event=bootstrap-failed .*reason="handshake timeout"' "$mef_log"
check "MEF HTTPS closes an idle connection (no ClientHello) within its 10 s timeout" \
    wait "$slow_idle_https"
check "MEF bootstrap closes a ClientHello dripped one byte every 2 s within 10 s" \
    wait "$slow_drip_tls"
check "MEF HTTPS closes a ClientHello dripped one byte every 2 s within 10 s (slowloris)" \
    wait "$slow_drip_https"
check "MAF closes an idle connection (no ClientHello) within its 15 s timeout" wait "$slow_idle_maf"
check "MAF closes a ClientHello dripped one byte every 2 s within 15 s" wait "$slow_drip_maf"
check "... and logged the handshake timeout" grep -q 'event=handshake-failed .*reason="handshake timeout"' "$maf_log"
cat "$LAB"/slow-*.out | sed 's/^/# /'

check "MEF is still running" alive mef
check "MAF is still running" alive maf
check "the second MAF is still running" running "$maf2"
m2mhsm_on enrolee erase --key-id "$KE" > /dev/null || true
out=$(enrolee connect 2>> "$LAB/enrolee.log") || true
KE3=$(device_ke_id)
check "a full enrolment and connection still succeeds" grep -q "authenticated $KE3 until" <<< "$out"
check "... a new KeID, fetched by the MAF over HTTPS" wait_log "$maf_log" "event=fetched ke_id=$KE3"
on_token enrolee "$M2M_BIN/m2m-enrolee" --config "$LAB/enrolee-dtls.json" bootstrap 2>> "$LAB/enrolee.log" || true
KE4=$(device_ke_id)
check "enrolment over DTLS still succeeds" wait_log "$mef_log" "event=enrolled .*ke_id=$KE4 .*transport=dtls"
out=$(enrolee connect 2>> "$LAB/enrolee.log") || true
check "... and that key connects to the MAF" grep -q "authenticated $KE4 until" <<< "$out"

kill -TERM "$maf2"
check "SIGTERM: the second MAF exits" wait_gone "$maf2" 10
check "... after logging stopped" grep -q "event=stopped" "$maf2_log"

# 4b. A MAF whose MEF is down refuses the handshake and stays up; one that cannot resolve its
# MEF refuses to start; one out of descriptors pauses accepting instead of spinning, and
# serves again once descriptors are free.
port3=$(free_port) dead=$(free_port) metrics3=$(free_port) dtls3=$(free_port)
cp "$M2M_MAF_CONFIG" "$LAB/maf3.json"
set_json "$LAB/maf3.json" maf listen "\"127.0.0.1:$port3\""
set_json "$LAB/maf3.json" maf metrics "\"127.0.0.1:$metrics3\""
set_json "$LAB/maf3.json" maf listen_dtls "\"127.0.0.1:$dtls3\""
set_json "$LAB/maf3.json" - mefs "[{\"fqdn\": \"$M2M_MEF_FQDN\", \"url\": \"https://127.0.0.1:$dead\"}]"
start_maf "$LAB/maf3.json" "$LAB/maf3.log" "$LAB/maf3.pid"
maf3=$(cat "$LAB/maf3.pid")
E2E_EXTRA_PIDS+=("$maf3")
unknown="0123456789ABCDEF0123456789ABCDEF@$M2M_MEF_FQDN"
openssl s_client -connect "127.0.0.1:$port3" -tls1_2 -psk "$(openssl rand -hex 32)" \
    -psk_identity "$unknown" < /dev/null > "$LAB/maf3-client.out" 2>&1 || true
check "MEF down: the MAF refuses the waiting handshake (unknown_psk_identity)" \
    grep -q "alert unknown psk identity" "$LAB/maf3-client.out"
check "... logs the failed fetch" wait_log "$LAB/maf3.log" "event=fetch-failed ke_id=$unknown status=0"
check "... and keeps running" running "$maf3"
kill -TERM "$maf3"
check "... and stops cleanly" wait_gone "$maf3" 10
set_json "$LAB/maf3.json" - mefs "[{\"fqdn\": \"$M2M_MEF_FQDN\", \"url\": \"https://mef.invalid:443\"}]"
refuse "a MEF URL that does not resolve is refused at start" \
    "$M2M_BIN/m2m-maf" --config "$LAB/maf3.json"
check "... saying why" bash -c "'$M2M_BIN/m2m-maf' --config '$LAB/maf3.json' 2>&1 | grep -q 'cannot resolve mef.invalid'"
set_json "$LAB/maf3.json" - mefs "[{\"fqdn\": \"$M2M_MEF_FQDN\", \"url\": \"https://127.0.0.1:$M2M_MEF_HTTPS_PORT/prefix\"}]"
refuse "a MEF URL with a path is refused at start (the path would be ignored)" \
    "$M2M_BIN/m2m-maf" --config "$LAB/maf3.json"
set_json "$LAB/maf3.json" - mefs "[{\"fqdn\": \"$M2M_MEF_FQDN\", \"url\": \"https://127.0.0.1:$M2M_MEF_HTTPS_PORT\"}]"
start_maf "$LAB/maf3.json" "$LAB/maf3.log" "$LAB/maf3.pid"
maf3=$(cat "$LAB/maf3.pid")
E2E_EXTRA_PIDS+=("$maf3")
prlimit --pid "$maf3" --nofile=48:48
# 80 connections held open until the MAF has paused twice (a second pause shows it tried
# again after the first); a busy loop would have logged hundreds of lines by then.
python3 - "$port3" "$LAB/maf3.log" > "$LAB/maf3-flood.out" 2>&1 <<'PY'
import socket, sys, time
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(80)]
for _ in range(1200):
    if open(sys.argv[2]).read().count("event=accept-paused") >= 2:
        break
    time.sleep(0.05)
for s in held:
    s.close()
PY
check "out of descriptors: the MAF paused accepting and said why" \
    grep -q 'event=accept-paused reason="Too many open files"' "$LAB/maf3.log"
n=$(count_log "$LAB/maf3.log" "accept-paused")
check "... again after a pause, not in a busy loop ($n lines)" test "$n" -ge 2 -a "$n" -le 10
check "... and it is still running" running "$maf3"
cp "$LAB/enrolee2.json" "$LAB/enrolee3.json"
set_json "$LAB/enrolee3.json" enrolee target_uri "\"tls://127.0.0.1:$port3\""
out=$(on_token enrolee "$M2M_BIN/m2m-enrolee" --config "$LAB/enrolee3.json" connect 2>> "$LAB/enrolee.log") || true
check "... and serves the device again once descriptors are free" grep -q "authenticated .* until" <<< "$out"
kill -TERM "$maf3"
check "... and stops cleanly" wait_gone "$maf3" 10

# 5. No secret in any log.
bash "$LABSH" stop "$LAB" > /dev/null
check "no log line carries the Kpm" bash -c "! grep -q -i -F \"\$(cat '$M2M_KPM_HEX_FILE')\" '$LAB'/*.log"
for pin in "$LAB"/*.pin; do
    check "no log line carries the PIN in ${pin##*/}" bash -c "! grep -q -F \"\$(cat '$pin')\" '$LAB'/*.log"
done
check "no log line carries the credential (base64 or hex)" \
    bash -c "! grep -q -i -F -e '$cred' -e '${cred_hex:-no-credential}' '$LAB'/*.log"
finish
