#!/usr/bin/env bash
# The loadable provider configured from openssl.cnf (pkcs11-provider's key names): it opens
# the token itself, `openssl list` shows it active, and a server that never links
# libm2mhsm (cnf_peer) completes handshakes with openssl s_client using handles the
# provider hands out. A wrong key and an unknown identity are refused.
. "$(dirname "$0")/lib.sh"
: "${CNF_PEER:?}" "${M2MHSM_PROVIDER_DIR:?}"
lab_init tlscnf cnf

m() { "$M2MHSM" --token "$(token_uri cnf)" --pin-source "file:$USER_PIN_FILE" "$@"; }
token_ready cnf
kpm=$(openssl rand -hex 32)
echo "$kpm" > "$LAB/kpm.hex"
m kpm import --kpm-id dev-1 --key-file "$LAB/kpm.hex" >/dev/null

# The provider learns module, init args and token from this file only: the CLI's
# M2MHSM_MODULE_INIT_ARGS is not in the environment of the programs that read it (p11-kit's
# client still takes its server from P11_KIT_SERVER_ADDRESS: no module option names it).
# Init args (softokn) in double quotes: OpenSSL's parser would strip their single quotes.
init_args_line=""
if [ -n "${M2MHSM_MODULE_INIT_ARGS:-}" ]; then
    init_args_line="pkcs11-module-init-args = \"$M2MHSM_MODULE_INIT_ARGS\""
fi
cat > "$LAB/openssl.cnf" <<CNF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
m2mhsm = m2mhsm_sect
[default_sect]
activate = 1
[m2mhsm_sect]
module = $M2MHSM_PROVIDER_DIR/m2mhsm.so
pkcs11-module-path = $M2MHSM_MODULE
$init_args_line
pkcs11-module-token-pin = file:$USER_PIN_FILE
m2mhsm-token-uri = $(token_uri cnf)
m2mhsm-lock-file = $LAB/m2mhsm.lock
activate = 1
CNF

unset M2MHSM_MODULE_INIT_ARGS
check "openssl list shows the configured provider active" \
    bash -c "OPENSSL_CONF='$LAB/openssl.cnf' openssl list -providers | grep -A3 '^  m2mhsm' | grep -q 'status: active'"

run() { # PSK-HEX IDENTITY
    port=$(free_port)
    OPENSSL_CONF="$LAB/openssl.cnf" "$CNF_PEER" "$port" > "$LAB/peer.out" 2>&1 &
    local server=$!
    wait_log "$LAB/peer.out" listening > /dev/null 2>&1 || true
    timeout 20 openssl s_client -connect "127.0.0.1:$port" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
        -psk "$1" -psk_identity "$2" < /dev/null > "$LAB/client.out" 2>&1 || true
    wait "$server" || true
}
run "$kpm" dev-1
check "a server configured only by openssl.cnf completes the handshake" \
    grep -q "^ok identity=dev-1" "$LAB/peer.out"
run "$(openssl rand -hex 32)" dev-1
check "negative control: a wrong Kpm is refused" grep -q "^fail" "$LAB/peer.out"
run "$kpm" dev-2
check "negative control: an unknown identity is refused" grep -q "^fail identity=dev-2" "$LAB/peer.out"
sed -i 's|^m2mhsm-token-uri = .*|m2mhsm-token-uri = pkcs11:token=missing|' "$LAB/openssl.cnf"
check "a configured token that does not exist fails the provider's load" \
    bash -c "! OPENSSL_CONF='$LAB/openssl.cnf' openssl list -providers 2>/dev/null | grep -A3 '^  m2mhsm' | grep -q 'status: active'"
finish
