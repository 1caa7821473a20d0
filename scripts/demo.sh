#!/usr/bin/env bash
# The key lifecycle on a throwaway SoftHSM token, as a timeline: a Kpm is provisioned, the
# MEF is configured with a short Enrolment Expiry, a real OpenSSL TLS-PSK handshake
# exports the Enrolment Key, the MEF stores Ke and derives Km in the token, the Enrolment
# Expiry passes, and the sweep erases the Enrolee's credentials while its Kpm stays.
# Nothing is left behind. (The MEF/MAF services replace the OpenSSL stand-ins later.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j "$(nproc)" > build/demo-build.log 2>&1 || { cat build/demo-build.log; exit 1; }

EXPIRY=${EXPIRY:-10}
LAB=$(mktemp -d "${TMPDIR:-/tmp}/m2mhsm-demo.XXXXXX")
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$LAB"; }
trap cleanup EXIT
mkdir -p "$LAB/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$LAB" > "$LAB/softhsm2.conf"
export SOFTHSM2_CONF="$LAB/softhsm2.conf"
(umask 077; openssl rand -hex 12 > "$LAB/so.pin"; openssl rand -hex 12 > "$LAB/user.pin"
 openssl rand -hex 32 > "$LAB/kpm.hex")

start=$(date +%s)
step() { printf '\n[t+%02ds] %s\n' "$(( $(date +%s) - start ))" "$*"; }
m() { ./build/src/apps/m2mhsm --token pkcs11:token=mef --pin-source "file:$LAB/user.pin" "$@"; }

step "Throwaway SoftHSM token 'mef' in $LAB (PINs in 0600 files, never on a command line)"
m token-init --label mef --so-pin-source "file:$LAB/so.pin"

step "Bootstrap Credential Configuration: Kpm for KpmID dev-1 into the token (8.3.2.1)"
m kpm import --kpm-id dev-1 --key-file "$LAB/kpm.hex"

step "Bootstrap Instruction Configuration at the MEF: target, Enrolee-ID, Enrolment Expiry ${EXPIRY}s"
m enrolee configure --kpm-id dev-1 --target-id maf.example.com \
    --enrolee-id //sp.example.com/cse1/Cdev1 --enrolment-expiry "$EXPIRY"

step "Bootstrap Security Handshake: openssl s_server/s_client, TLS 1.2 PSK-AES128-CBC-SHA256, both export EXPORTER-oneM2M-Bootstrap (10.3.1)"
echo "    (the OpenSSL stand-ins take this throwaway Kpm as -psk; the services keep it in the token)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
common=(-tls1_2 -cipher PSK-AES128-CBC-SHA256 -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48)
mkfifo "$LAB/stdin"; exec 3<>"$LAB/stdin"
openssl s_server -accept "127.0.0.1:$port" -nocert -naccept 1 -psk "$(cat "$LAB/kpm.hex")" \
    "${common[@]}" > "$LAB/server.out" 2>&1 <&3 &
server=$!
for _ in $(seq 100); do grep -q ACCEPT "$LAB/server.out" && break; sleep 0.05; done
openssl s_client -connect "127.0.0.1:$port" -psk "$(cat "$LAB/kpm.hex")" -psk_identity dev-1 \
    "${common[@]}" < /dev/null > "$LAB/client.out" 2>&1 || true
kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""; exec 3>&-
awk '/Keying material:/{print $3}' "$LAB/server.out" > "$LAB/export.hex"
if [ -s "$LAB/export.hex" ] && [ "$(cat "$LAB/export.hex")" = "$(awk '/Keying material:/{print $3}' "$LAB/client.out")" ]; then
    echo "    handshake complete; both sides exported the same 48 bytes (not shown)"
else
    echo "    handshake failed"; exit 1
fi

step "Enrolment Key Generation: the MEF stores Ke under KeID = hex(RelativeKeID)@mef.example.com (10.3.4)"
m ke import --kpm-id dev-1 --mef-fqdn mef.example.com --exported-file "$LAB/export.hex"
rm -f "$LAB/export.hex" "$LAB/server.out" "$LAB/client.out"
ke_id=$(m list --json | python3 -c 'import json,sys; print([r["identity"] for r in json.load(sys.stdin) if r["kind"]=="ke"][0])')

step "Km = HMAC-SHA-256(Ke, label || MAF-ID) computed by the token (10.3.2); lifetime clamped to Ke's"
m derive km --ke-id "$ke_id" --maf-id maf.example.com --valid-until 20991231T000000
step "What the token holds (every key sensitive, non-extractable; expiry exact to the second)"
m list

step "Waiting past the Enrolment Expiry (${EXPIRY}s)..."
sleep "$(( EXPIRY + 1 ))"
m list

step "Sweep: the Enrolee's credential ids and all its credentials are erased (the CR); Kpm stays for re-enrolment"
m sweep
m list

step "Done in $(( $(date +%s) - start ))s; the throwaway token is removed."
