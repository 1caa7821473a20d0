#!/usr/bin/env bash
# Peer check with OpenSSL's own command line: a TLS 1.2 PSK handshake between
# openssl s_server and s_client exports EXPORTER-oneM2M-Bootstrap (clause 10.3.1); the CLI
# stores that export as Ke; pkcs11-tool then asks the token for HMAC(Ke, Km label ||
# MAF-ID) and openssl mac computes the same from the exported bytes (clause 10.3.2).
. "$(dirname "$0")/lib.sh"
lab_init exporter mef

m() { "$M2MHSM" --token "$(token_uri mef)" --pin-source "file:$USER_PIN_FILE" "$@"; }
mq() { m "$@" >/dev/null; }
export P11PIN; P11PIN=$(cat "$USER_PIN_FILE")


# handshake SERVER_KPM_HEX CLIENT_KPM_HEX: prints "server-export client-export".
handshake() {
    local port; port=$(free_port)
    local common=(-tls1_2 -cipher PSK-AES128-CBC-SHA256 -keymatexport EXPORTER-oneM2M-Bootstrap
                  -keymatexportlen 48)
    # s_server quits at end of input: give it a stdin that stays open until we close it.
    # A fresh output file: the readiness check below must not see the last server's ACCEPT.
    rm -f "$LAB/stdin" "$LAB/server.out" "$LAB/client.out"
    mkfifo "$LAB/stdin"; exec 3<>"$LAB/stdin"
    timeout 20 openssl s_server -accept "127.0.0.1:$port" -nocert -naccept 1 -psk "$1" \
        "${common[@]}" > "$LAB/server.out" 2>&1 <&3 &
    local server=$!
    # Ready when it says so; a probe connection would use up its one accept.
    wait_log "$LAB/server.out" ACCEPT > /dev/null 2>&1 || true
    timeout 20 openssl s_client -connect "127.0.0.1:$port" -psk "$2" -psk_identity dev-1 \
        "${common[@]}" < /dev/null > "$LAB/client.out" 2>&1 || true
    # -naccept 1: the server exits once that connection is over, its export printed.
    wait "$server" 2>/dev/null || true
    exec 3>&-
    local s c
    s=$(awk '/Keying material:/{print $3}' "$LAB/server.out" | tail -1)
    c=$(awk '/Keying material:/{print $3}' "$LAB/client.out" | tail -1)
    echo "${s:-none} ${c:-none}"
}

token_ready mef
kpm=$(openssl rand -hex 32)
(umask 077; echo "$kpm" > "$LAB/kpm.hex")
check "kpm import" mq kpm import --kpm-id dev-1 --key-file "$LAB/kpm.hex"
check "enrolee configure" mq enrolee configure --kpm-id dev-1 --target-id maf.example.com \
    --enrolee-id //sp.example.com/cse1/Cdev1 --enrolment-expiry 600

read -r sexp cexp < <(handshake "$kpm" "$kpm")
check "s_server and s_client export the same 48 bytes" test "$sexp" = "$cexp" -a "${#sexp}" -eq 96
read -r wexp wcexp < <(handshake "$kpm" "$(openssl rand -hex 32)")
check "negative control: with a wrong Kpm the handshake fails with an alert" \
    grep -q "alert bad record mac" "$LAB/client.out"
check "negative control: and the two sides share no export" test "$wexp" != "$wcexp"

echo "$cexp" > "$LAB/export.hex"
check "ke import of the export" mq ke import --kpm-id dev-1 --mef-fqdn mef.example.com \
    --exported-file "$LAB/export.hex"
want_ke_id="$(echo "${cexp:0:32}" | tr a-f A-F)@mef.example.com"
got_ke_id=$(m list --json | python3 -c 'import json,sys; print([r["identity"] for r in json.load(sys.stdin) if r["kind"]=="ke"][0])')
check "KeID is hex(RelativeKeID)@MEF-FQDN (10.3.4)" test "$got_ke_id" = "$want_ke_id"
m list --json > "$LAB/ke.json"
check "Ke took the configured Enrolment Expiry" \
    python3 -c 'import json,sys; r=[r for r in json.load(open(sys.argv[1])) if r["kind"]=="ke"][0]; assert r["enrolmentExpiry"]=="600s" and r["state"]=="valid"' "$LAB/ke.json"

# The Ke object's CKA_ID, as pkcs11-tool shows it.
ke_cka_id=$(p11tool mef --login --pin env:P11PIN --list-objects --type secrkey 2>/dev/null | grep -A2 "label: *m2mhsm:ke:" | awk '/ID:/{print $2}')
printf '%s%s' "oneM2M Enrolment Key to Master Credential derivation" maf.example.com > "$LAB/km.in"
p11tool mef --login --pin env:P11PIN --sign \
    -m SHA256-HMAC --id "$ke_cka_id" --input-file "$LAB/km.in" --output-file "$LAB/km.token" \
    >/dev/null 2>&1
token_km=$(xxd -p -c 64 "$LAB/km.token" 2>/dev/null || echo none)
host_km=$(openssl mac -digest SHA256 -macopt "hexkey:${cexp:32:64}" -in "$LAB/km.in" HMAC | tr A-F a-f)
check "token HMAC keyed by the stored Ke equals openssl mac over the export (Km, 10.3.2)" \
    test "$token_km" = "$host_km"

# Which path makes the Km, as measured on each kind (docs/tokens.md): SoftHSM 2.6.1 has no
# CKM_HKDF_DERIVE, nor has it behind p11-kit's RPC, nor opencryptoki's software token: C_Sign.
# NSS softokn offers it: the Km is derived inside the token.
case "$TOKEN_KIND" in
    softokn) path="derived in the token" in_token=True ;;
    *) path="derived by C_Sign through host memory" in_token=False ;;
esac
derive_out=$(m derive km --maf-id maf.example.com --ke-id "$got_ke_id")
check "derive km on $TOKEN_KIND reports '$path': $derive_out" grep -qF "$path" <<< "$derive_out"
m list --json > "$LAB/list.json"
check "list --json: the Km says derived_in_token ${in_token,}, the Ke has no such field" \
    python3 -c 'import json,sys; rs=json.load(open(sys.argv[1])); km=[r for r in rs if r["kind"]=="km"]; ke=[r for r in rs if r["kind"]=="ke"]; assert len(km)==1 and km[0]["derived_in_token"] is (sys.argv[2]=="True") and "derived_in_token" not in ke[0]' "$LAB/list.json" "$in_token"

finish
