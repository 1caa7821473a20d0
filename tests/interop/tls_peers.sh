#!/usr/bin/env bash
# TLS-PSK with the key in the token against peers we did not write: openssl s_client and
# s_server, gnutls-cli (TLS 1.2 with and without the extended master secret, DTLS 1.2) and
# gnutls-serv. Our side (tls_peer) is given the token only, never the PSK bytes. Each peer
# run has a negative control, and the Enrolment Expiry is checked end to end.
. "$(dirname "$0")/lib.sh"
: "${TLS_PEER:?TLS_PEER must name the tls_peer test program}"
lab_init tlspeers tls

LOCK="$LAB/m2mhsm.lock"
tokargs=(--token "$(token_uri tls)" --pin-source "file:$USER_PIN_FILE" --lock-file "$LOCK")
# The same, quoted for the bash -c of a check (an opencryptoki URI holds a ';').
tokq=$(printf '%q ' "${tokargs[@]}")
m() { "$M2MHSM" "${tokargs[@]}" "$@"; }
mq() { m "$@" >/dev/null; }
export P11PIN; P11PIN=$(cat "$USER_PIN_FILE")
sha_of_hex() { echo -n "$1" | xxd -r -p | openssl dgst -sha256 -r | cut -d' ' -f1; }

server=""
stop_server() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    server=""
}
trap 'stop_server; lab_cleanup' EXIT

# start_peer_server COUNT ARGS...: our token-backed server on a port the kernel chose ($port).
start_peer_server() {
    local count=$1; shift
    rm -f "$LAB/peer.out"
    "$TLS_PEER" server "${tokargs[@]}" --port 0 --count "$count" "$@" > "$LAB/peer.out" 2>&1 &
    server=$!
    wait_log "$LAB/peer.out" "^listening port=[0-9]+$" || return 1
    port=$(sed -n 's/^listening port=//p' "$LAB/peer.out")
}
# peer_line N: the server's N-th connection result, once it has reported it.
peer_line() {
    wait_count "$LAB/peer.out" '^(ok|fail)' "$1" > /dev/null 2>&1 || true
    grep -E '^(ok|fail)' "$LAB/peer.out" | sed -n "${1}p"
}
# start_gnutls_serv PSK-HEX: gnutls-serv on $port with that key for dev-1, once it listens.
start_gnutls_serv() {
    echo "dev-1:$1" > "$LAB/psk.passwd"
    gnutls-serv --pskpasswd "$LAB/psk.passwd" -p "$port" \
        --priority "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+PSK" > "$LAB/gserv.out" 2>&1 &
    server=$!
    wait_until 30 "ss -Hltn 'sport = :$port' | grep -q LISTEN"
}

token_ready tls
kpm=$(openssl rand -hex 32)
echo "$kpm" > "$LAB/kpm.hex"
check "kpm import" mq kpm import --kpm-id dev-1 --key-file "$LAB/kpm.hex"

# ---- openssl s_client against our server (TLS 1.2, EMS on: OpenSSL's default) ----
sclient() { # PSK-HEX CIPHER
    timeout 20 openssl s_client -connect "127.0.0.1:$port" -tls1_2 -cipher "$2" -psk "$1" \
        -psk_identity dev-1 -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 \
        < /dev/null > "$LAB/client.out" 2>&1 || true
}
for cipher in PSK-AES128-CBC-SHA256 PSK-AES128-GCM-SHA256 PSK-AES128-CCM8; do
    start_peer_server 1
    sclient "$kpm" "$cipher"
    line=$(peer_line 1)
    exp=$(awk '/Keying material:/{print $3}' "$LAB/client.out")
    check "s_client $cipher: our server completes the handshake" \
        grep -q "^ok identity=dev-1 cipher=$cipher " <<< "$line"
    check "s_client $cipher: extended master secret in use" grep -q "Extended master secret: yes" "$LAB/client.out"
    check "s_client $cipher: both sides export the same EXPORTER-oneM2M-Bootstrap" \
        grep -q "export-sha256=$(sha_of_hex "$exp")" <<< "$line"
    stop_server
done
start_peer_server 1
sclient "$(openssl rand -hex 32)" PSK-AES128-CBC-SHA256
check "negative control: s_client with a wrong Kpm is refused" grep -q "^fail" <<< "$(peer_line 1)"
stop_server
# EMS off: OpenSSL 3.0's s_client has no flag for it; its config does.
printf 'openssl_conf = c\n[c]\nssl_conf = s\n[s]\nsystem_default = d\n[d]\nOptions = -ExtendedMasterSecret\n' \
    > "$LAB/noems.cnf"
start_peer_server 1
OPENSSL_CONF="$LAB/noems.cnf" sclient "$kpm" PSK-AES128-CBC-SHA256
exp=$(awk '/Keying material:/{print $3}' "$LAB/client.out")
check "s_client with EMS off: extended master secret not in use" \
    grep -q "Extended master secret: no" "$LAB/client.out"
check "s_client with EMS off: handshake and the same export" \
    grep -q "^ok identity=dev-1 .*export-sha256=$(sha_of_hex "${exp:-00}")" <<< "$(peer_line 1)"
stop_server

# ---- gnutls-cli: TLS 1.2 without EMS, and DTLS 1.2 ----
gnutls() { # PSK-HEX PRIORITY [--udp]
    timeout "${GNUTLS_TIMEOUT:-20}" gnutls-cli --pskusername dev-1 --pskkey "$1" --priority "$2" ${3:-} -p "$port" \
        127.0.0.1 < /dev/null > "$LAB/gnutls.out" 2>&1 || true
}
tls12_noems="NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA256:%NO_SESSION_HASH"
start_peer_server 1
gnutls "$kpm" "$tls12_noems"
check "gnutls-cli TLS 1.2 without extended master secret: handshake" \
    grep -q "^ok identity=dev-1 cipher=PSK-AES128-CBC-SHA256" <<< "$(peer_line 1)"
stop_server
start_peer_server 1
gnutls "$(openssl rand -hex 32)" "$tls12_noems"
check "negative control: gnutls-cli with a wrong Kpm is refused" grep -q "^fail" <<< "$(peer_line 1)"
stop_server
dtls="NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM-8:-MAC-ALL:+AEAD"
start_peer_server 1 --dtls
gnutls "$kpm" "$dtls" --udp
check "gnutls-cli --udp DTLS 1.2 PSK-AES128-CCM8: handshake" \
    grep -q "^ok identity=dev-1 cipher=PSK-AES128-CCM8" <<< "$(peer_line 1)"
check "gnutls-cli --udp reports the handshake complete" grep -q "Handshake was completed" "$LAB/gnutls.out"
stop_server
start_peer_server 1 --dtls
# DTLS drops a record with a bad MAC instead of alerting (RFC 6347 4.1.2.7): the handshake
# never completes on either side.
GNUTLS_TIMEOUT=6 gnutls "$(openssl rand -hex 32)" "$dtls" --udp
check "negative control: DTLS with a wrong Kpm never completes" \
    bash -c "! grep -q '^ok' '$LAB/peer.out' && ! grep -q 'Handshake was completed' '$LAB/gnutls.out'"
stop_server

# ---- TLS 1.3 external PSK (an option): the early secret is a token object ----
start_peer_server 1 --tls13
timeout 20 openssl s_client -connect "127.0.0.1:$port" -tls1_3 -psk "$kpm" -psk_identity dev-1 \
    -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 < /dev/null \
    > "$LAB/client.out" 2>&1 || true
exp=$(awk '/Keying material:/{print $3}' "$LAB/client.out")
check "s_client -tls1_3: handshake with TLS_AES_128_GCM_SHA256 and the same export" \
    grep -q "^ok identity=dev-1 cipher=TLS_AES_128_GCM_SHA256 export-sha256=$(sha_of_hex "${exp:-00}")" \
    <<< "$(peer_line 1)"
stop_server
start_peer_server 1 --tls13
timeout 20 openssl s_client -connect "127.0.0.1:$port" -tls1_3 -psk "$(openssl rand -hex 32)" \
    -psk_identity dev-1 < /dev/null > "$LAB/client.out" 2>&1 || true
check "negative control: TLS 1.3 with a wrong Kpm is refused" grep -q "^fail" <<< "$(peer_line 1)"
stop_server
start_peer_server 1 --tls13
gnutls "$kpm" "NORMAL:-VERS-ALL:+VERS-TLS1.3:+PSK:+DHE-PSK:+ECDHE-PSK"
check "gnutls-cli TLS 1.3 PSK: handshake" \
    grep -q "^ok identity=dev-1 cipher=TLS_AES_128_GCM_SHA256" <<< "$(peer_line 1)"
stop_server

# ---- our client against openssl s_server and gnutls-serv ----
sserver() { # PSK-HEX
    port=$(free_port)
    rm -f "$LAB/stdin" "$LAB/sserver.out"; mkfifo "$LAB/stdin"; exec 3<>"$LAB/stdin"
    timeout 20 openssl s_server -accept "127.0.0.1:$port" -nocert -naccept 1 -psk "$1" -tls1_2 \
        -cipher PSK-AES128-CBC-SHA256 -keymatexport EXPORTER-oneM2M-Bootstrap \
        -keymatexportlen 48 > "$LAB/sserver.out" 2>&1 <&3 &
    server=$!
    wait_log "$LAB/sserver.out" ACCEPT
}
sserver "$kpm"
"$TLS_PEER" client "${tokargs[@]}" --identity dev-1 --port "$port" > "$LAB/peer.out" 2>&1 || true
wait_log "$LAB/sserver.out" "Keying material:" || true
stop_server; exec 3>&-
exp=$(awk '/Keying material:/{print $3}' "$LAB/sserver.out")
check "our client with s_server: handshake and the same export" \
    grep -q "^ok identity=dev-1 .*export-sha256=$(sha_of_hex "${exp:-00}")" "$LAB/peer.out"
sserver "$(openssl rand -hex 32)"
check "negative control: our client with a wrong-key s_server fails" \
    bash -c "! '$TLS_PEER' client $tokq --identity dev-1 --port $port >/dev/null 2>&1"
stop_server; exec 3>&-

port=$(free_port)
check "gnutls-serv listens" start_gnutls_serv "$kpm"
check "our client with gnutls-serv: handshake" \
    bash -c "'$TLS_PEER' client $tokq --identity dev-1 --port $port | grep -q '^ok identity=dev-1'"
stop_server
port=$(free_port)
check "gnutls-serv with a wrong key listens" start_gnutls_serv "$(openssl rand -hex 32)"
check "negative control: our client with a wrong-key gnutls-serv fails" \
    bash -c "! '$TLS_PEER' client $tokq --identity dev-1 --port $port >/dev/null 2>&1"
stop_server

# ---- Enrolment Expiry at an Enrolment Target: refuse with an alert, then erase ----
openssl rand -hex 48 > "$LAB/export.hex"
mq ke import --kpm-id dev-1 --mef-fqdn mef.example.com --exported-file "$LAB/export.hex" \
    --enrolee-id //sp.example.com/cse1/Cdev1 --target-id maf.example.com --enrolment-expiry 3600
ke_id=$(m list --json | python3 -c 'import json,sys; print([r["identity"] for r in json.load(sys.stdin) if r["kind"]=="ke"][0])')
mq derive km --ke-id "$ke_id" --maf-id maf.example.com
exphex=$(cat "$LAB/export.hex")
printf '%s%s' "oneM2M Enrolment Key to Master Credential derivation" maf.example.com > "$LAB/km.in"
km=$(openssl mac -digest SHA256 -macopt "hexkey:${exphex:32:64}" -in "$LAB/km.in" HMAC)
kmclient() {
    timeout 20 openssl s_client -connect "127.0.0.1:$port" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
        -psk "$km" -psk_identity "$ke_id" "$@" < /dev/null > "$LAB/client.out" 2>&1 || true
}
start_peer_server 1 --kind km
kmclient
check "within the Enrolment Expiry s_client connects with KeID and Km (openssl mac)" \
    grep -q "^ok identity=$ke_id" <<< "$(peer_line 1)"
# Nothing to resume past the expiry: no session id, no ticket.
check "the server offers no session to resume (empty Session-ID)" \
    grep -qE "^ *Session-ID: *$" "$LAB/client.out"
check "and no session ticket" bash -c "! grep -q 'TLS session ticket' '$LAB/client.out'"
stop_server
# Past it: the same server with its key store's clock two hours ahead.
start_peer_server 1 --kind km --clock-offset 7200
kmclient
check "past it the handshake is refused with an alert" grep -q "alert" "$LAB/client.out"
check "and the server reports the identity expired, 2 records erased" \
    bash -c "grep -q '^fail' <<< '$(peer_line 1)' && grep -q '^psk expired identity=$ke_id erased=2' '$LAB/peer.out'"
stop_server
# pkcs11-tool first: m2mhsm list would repair leftovers and hide them.
p11tool tls --login --pin env:P11PIN -O > "$LAB/objects.txt" 2>/dev/null || true
check "pkcs11-tool lists the Kpm's objects ..." grep -q "m2mhsm:kpm:dev-1:" "$LAB/objects.txt"
check "... and finds no key of that enrolment" bash -c "! grep -q '$ke_id' '$LAB/objects.txt'"
check "m2mhsm list shows neither Ke nor Km, and repairs nothing" \
    bash -c "'$M2MHSM' $tokq list > '$LAB/list.out' 2>&1 && ! grep -qE '^(ke|km) |repaired' '$LAB/list.out'"
check "the Kpm stays for re-enrolment" bash -c "'$M2MHSM' $tokq list | grep -q '^kpm *dev-1'"

finish
