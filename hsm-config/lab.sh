#!/usr/bin/env bash
# A complete throwaway m2mhsm lab: four tokens (mef, maf, enrolee, eb) of one token kind
# (hsm-config/kinds/KIND.sh: softhsm, the default, opencryptoki, softokn, custom), a CA with
# TLS certificates whose private keys were generated in the mef / maf / eb tokens (or, on a
# kind without EC, in SoftHSM tokens mef-tls / maf-tls / eb-tls beside them), two test Kpm in
# the mef and enrolee tokens (the first enrols for the MAF, the second for the Enrolee B),
# free loopback ports, the service and device configurations and a sourceable lab.env. For
# tests and demonstrations only.
#
#   hsm-config/lab.sh init DIR [--expiry SECONDS|YYYYMMDDThhmmss] [--build BUILD_DIR | --bin BIN_DIR]
#                              [--tls13] [--token-kind KIND]
#   hsm-config/lab.sh tokens DIR [--token-kind KIND] [--build B | --bin B] LABEL...
#                                   # only throwaway tokens, for suites: DIR/tokens.env
#   hsm-config/lab.sh tokens DIR --add LABEL...   # more of them, tokens.env written again
#   hsm-config/lab.sh start DIR     # m2m-mef, m2m-maf and m2m-eb in the background, ports ready
#   hsm-config/lab.sh stop DIR      # SIGTERM (SIGKILL after 10 s); stopping twice is fine
#   hsm-config/lab.sh clean DIR     # stop, release what the kind holds outside DIR, remove DIR
#                                   # (a remote kind's token servers run from init to clean)
#   hsm-config/lab.sh restart-token DIR mef|maf|enrolee|eb   # kinds that serve tokens remotely
#   hsm-config/lab.sh stop-token|start-token DIR mef|maf|enrolee|eb   # a longer outage
#
# KIND: softhsm (the default: SoftHSM loaded in every process), or a file
# hsm-config/kinds/KIND.sh defining what differs from softhsm (hsm-config/kinds/softhsm.sh
# lists the interface; docs/tokens.md).
#
# PINs live only in 0600 files under DIR and are never put on a command line: the m2mhsm
# tools read them through file: pin-sources, pkcs11-tool through `--pin env:VAR` (the
# variable is set for that one command only).
set -euo pipefail

prog=${0##*/}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

TOKENS=(mef maf enrolee eb)
SERVERS=(mef maf eb)
KPM_ID=kpm-lab-0001
ENROLEE_ID=//device.example.com/C0001
MEF_FQDN=mef.example.com
MAF_ID=maf.example.com
# The Enrolee B (m2m-eb): an absolute CSE-ID, whose host its certificate names; and the
# second device, whose enrolment targets it.
EB_ID=//eb.example.com/cse-eb
EB_FQDN=eb.example.com
KPM_B_ID=kpm-lab-0002
ENROLEE_B_ID=//device-b.example.com/C0002
START_TIMEOUT=15 # seconds for the servers to listen
STOP_TIMEOUT=10  # seconds between SIGTERM and SIGKILL

# Errors go to the stderr lab.sh started with: a kind's token set-up runs inside quiet, whose
# output file is removed when init fails, so an error written there (a missing M2M_CUSTOM_*
# variable, a pkcs11-tool failure in a nested quiet) would vanish and init fail silently.
# (Every process lab.sh leaves running closes it: see launch, kinds' servers, detached.)
exec {LAB_STDERR}>&2
# Run a daemon without lab.sh's saved stderr: a caller piping lab.sh's output (scripts/demo.sh)
# would otherwise wait for the daemon to exit.
detached() { "$@" {LAB_STDERR}>&-; }

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&"$LAB_STDERR"
    exit 1
}
say() { printf '%s: %s\n' "$prog" "$*"; }
usage() {
    cat >&2 <<EOF
usage: $prog init DIR [--expiry SECONDS|YYYYMMDDThhmmss] [--build BUILD_DIR | --bin BIN_DIR]
                 [--tls13] [--token-kind KIND]
       $prog tokens DIR [--token-kind KIND] [--build BUILD_DIR | --bin BIN_DIR] LABEL...
       $prog tokens DIR --add [--build BUILD_DIR | --bin BIN_DIR] LABEL...
       $prog start DIR
       $prog stop DIR
       $prog clean DIR
       $prog restart-token|stop-token|start-token DIR mef|maf|enrolee|eb
EOF
    exit 2
}
need() {
    local c
    for c in "$@"; do
        command -v "$c" > /dev/null || die "'$c' is not installed (see scripts/deps.sh)"
    done
}

# A lab directory's absolute path. Paths end up in softhsm2.conf, file: pin-sources, JSON
# and lab.env, so keep them to characters that need no quoting anywhere.
abs_dir() {
    local d
    d=$(realpath -m -- "$1") || die "cannot resolve '$1'"
    [[ $d =~ ^/[A-Za-z0-9._/@+,-]*$ ]] ||
        die "'$d': use a directory path made of letters, digits and . _ / @ + , - only"
    printf '%s\n' "$d"
}

# ---------------------------------------------------------------------------- token kinds

# softhsm is built in (hsm-config/kinds/softhsm.sh: its helpers, which also make the SoftHSM
# tokens that hold what another kind cannot, and the KIND_* defaults); any other kind is
# hsm-config/kinds/KIND.sh, sourced over it, and defines the kind_* functions where it differs.
# shellcheck source=/dev/null
. "$here/kinds/softhsm.sh"
KIND=softhsm
load_kind() {
    KIND=$1
    [ "$KIND" = softhsm ] && return 0
    if ! [[ $KIND =~ ^[a-z0-9-]+$ && -f "$here/kinds/$KIND.sh" ]]; then
        local f known=softhsm
        for f in "$here"/kinds/*.sh; do
            [ -e "$f" ] && [ "$f" != "$here/kinds/softhsm.sh" ] && known+=" $(basename "$f" .sh)"
        done
        die "unknown token kind '$KIND' (one of: $known)"
    fi
    # shellcheck source=/dev/null
    . "$here/kinds/$KIND.sh"
}
kind_has() { [ "$KIND" != softhsm ] && declare -F "$1" > /dev/null; }

# What every kind answers, softhsm's unless the kind says otherwise.
# token_uri DIR LABEL: the RFC 7512 URI of the lab's token LABEL (one token exactly).
token_uri() {
    if kind_has kind_token_uri; then kind_token_uri "$@"; else printf 'pkcs11:token=%s\n' "$2"; fi
}
# init_args DIR LABEL: C_Initialize's init args for that token, or nothing.
init_args() { if kind_has kind_init_args; then kind_init_args "$@"; fi; }

# ---------------------------------------------------------------------------------- init

# Runs on any exit of init; after a failure it empties DIR (it was empty when init began).
lab_dir="" tmp="" init_ok=0
init_cleanup() {
    [ -n "$tmp" ] && rm -rf -- "$tmp"
    if [ "$init_ok" != 1 ] && [ -n "$lab_dir" ] && [ -d "$lab_dir" ]; then
        if [ -f "$lab_dir/token-labels" ] && kind_has kind_stop; then kind_stop "$lab_dir" || true; fi
        if kind_has kind_clean; then kind_clean "$lab_dir" || true; fi
        find "$lab_dir" -mindepth 1 -delete 2> /dev/null || true
        printf '%s: init failed; %s was emptied\n' "$prog" "$lab_dir" >&2
    fi
}

# m2mhsm on one of the lab's tokens: m2m TOKEN ARGS...
m2m() {
    local t=$1
    shift
    M2MHSM_MODULE_INIT_ARGS=$(init_args "$lab_dir" "$t") \
        "$BIN/m2mhsm" --module "$MODULE" --token "$(token_uri "$lab_dir" "$t")" \
        --pin-source "file:$lab_dir/$t.pin" --lock-file "$lab_dir/$t.lock" "$@"
}

# Run a command quietly, showing its output only if it fails: quiet WHAT CMD...
quiet() {
    local what=$1
    shift
    if ! "$@" > "$tmp/out" 2>&1; then
        cat "$tmp/out" >&"$LAB_STDERR"
        die "$what failed"
    fi
}

# Random hex PINs of N characters: pins TOKEN N
pins() {
    local t=$1 n=$2
    openssl rand -hex 32 | cut -c "1-$n" > "$lab_dir/$t.pin"
    openssl rand -hex 32 | cut -c "1-$n" > "$lab_dir/$t.so.pin"
}

make_token() {
    local t=$1
    pins "$t" "$KIND_PIN_CHARS"
    if kind_has kind_make_token; then
        quiet "initialising $KIND token '$t'" \
            kind_make_token "$lab_dir" "$t" "$lab_dir/$t.so.pin" "$lab_dir/$t.pin"
    else
        softhsm_make_token "$lab_dir" "$t" "$lab_dir/$t.so.pin" "$lab_dir/$t.pin"
    fi
    say "$KIND token '$t' initialised (PINs in $lab_dir/$t.pin, $lab_dir/$t.so.pin)"
}

# Where a server's TLS key lives: on its own token where the kind can hold EC keys, else on
# a SoftHSM token T-tls beside it (the service's tls_key_pkcs11 section; docs/tokens.md).
tls_key_token() {
    if [ "$KIND_EC" = 1 ]; then printf '%s\n' "$1"; else printf '%s-tls\n' "$1"; fi
}

make_ca() {
    cat > "$tmp/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = m2mhsm lab CA
[v3_ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    quiet "making the CA" \
        openssl req -x509 -new -config "$tmp/ca.cnf" -extensions v3_ca \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
        -keyout "$lab_dir/ca.key" -out "$lab_dir/ca.crt" -days 60
    say "CA: $lab_dir/ca.crt (throwaway key in $lab_dir/ca.key)"
}

# A TLS certificate for FQDN whose private key is generated in token T and never leaves it:
# make_cert T FQDN CKA_ID
make_cert() {
    local t=$1 fqdn=$2 id=$3
    local label="$t-tls" pub="$lab_dir/$t-pub.pem" crt="$lab_dir/$t.crt"

    local kt
    kt=$(tls_key_token "$t")
    # 1, 2. The key pair, in the token: sensitive, never extractable, for signing; its public
    #       key, out of the token.
    if [ "$kt" = "$t" ] && kind_has kind_keypair; then
        kind_keypair "$lab_dir" "$t" "$label" "$id" "$tmp/$t-pub.der"
    elif [ "$kt" = "$t" ]; then
        softhsm_keypair "$lab_dir" "$t" "$label" "$id" "$tmp/$t-pub.der"
    else
        pins "$kt" 24
        softhsm_make_token "$lab_dir" "$kt" "$lab_dir/$kt.so.pin" "$lab_dir/$kt.pin"
        say "no EC key pair on $KIND: SoftHSM token '$kt' holds the $label key (tls_key_pkcs11)"
        softhsm_keypair "$lab_dir" "$kt" "$label" "$id" "$tmp/$t-pub.der"
    fi
    quiet "converting the $label public key" \
        openssl pkey -pubin -inform DER -in "$tmp/$t-pub.der" -out "$pub"
    # 3. A CSR signed by a throwaway key (openssl x509 -req checks that signature), and a
    #    certificate for the token's public key in place of the throwaway one.
    quiet "making the $fqdn CSR" \
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
        -keyout "$tmp/$t-throwaway.key" -subj "/CN=$fqdn" -out "$tmp/$t.csr"
    cat > "$tmp/$t.ext" <<EOF
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:$fqdn
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
    quiet "issuing the $fqdn certificate" \
        openssl x509 -req -in "$tmp/$t.csr" -CA "$lab_dir/ca.crt" -CAkey "$lab_dir/ca.key" \
        -force_pubkey "$pub" -days 30 -extfile "$tmp/$t.ext" -out "$crt"
    rm -f -- "$tmp/$t-throwaway.key" "$tmp/$t.csr"
    # 4. Checks: the chain, and the certificate's key is the token's key.
    quiet "verifying $crt" openssl verify -CAfile "$lab_dir/ca.crt" \
        -purpose sslserver "$crt"
    quiet "verifying $crt" openssl verify -CAfile "$lab_dir/ca.crt" \
        -purpose sslclient "$crt"
    openssl x509 -in "$crt" -noout -pubkey | openssl pkey -pubin -outform DER > "$tmp/a.der"
    openssl pkey -pubin -in "$pub" -outform DER > "$tmp/b.der"
    cmp -s "$tmp/a.der" "$tmp/b.der" || die "$crt does not hold token '$kt''s $label key"
    say "certificate $crt for $fqdn; key $label (CKA_ID $id) inside token '$kt'"
}

# import_kpm TOKEN [KPM-ID HEX-FILE]: the first device's Kpm unless told.
import_kpm() {
    local t=$1 id=${2:-$KPM_ID} hex=${3:-$lab_dir/kpm.hex}
    quiet "importing $id into token '$t'" \
        m2m "$t" kpm import --kpm-id "$id" --key-file "$hex"
    m2m "$t" list --json > "$tmp/list.json" || die "m2mhsm list failed on token '$t'"
    python3 - "$tmp/list.json" "$id" <<'EOF' || die "token '$t' does not list $id"
import json, sys
recs = json.load(open(sys.argv[1]))
sys.exit(0 if any(r.get("kind") == "kpm" and r.get("identity") == sys.argv[2]
                  for r in recs) else 1)
EOF
    say "Kpm $id imported into token '$t'"
}

# Ten loopback ports free for both TCP and UDP, all different (M2M_PORT_BASE: see free-ports).
free_ports() { "$here/free-ports" 10; }

write_configs() {
    local t kt tokens="{"
    for t in "${TOKENS[@]}"; do
        kt=$(tls_key_token "$t")
        tokens+=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]) + ": " + json.dumps(
            {"uri": sys.argv[2], "init_args": sys.argv[3], "tls_key_token": sys.argv[4]}) + ",")' \
            "$t" "$(token_uri "$lab_dir" "$t")" "$(init_args "$lab_dir" "$t")" "$kt")
    done
    tokens="${tokens%,}}"
    # SERVICE_MODULE: a kind whose programs reach the tokens through another module than the
    # lab's set-up steps (softhsm-remote: p11-kit's client).
    python3 - "$lab_dir" "${SERVICE_MODULE:-$MODULE}" "$EXPIRY" "$KPM_ID" "$ENROLEE_ID" "$MEF_FQDN" "$MAF_ID" \
        "$P_TLS" "$P_DTLS" "$P_HTTPS" "$P_MAF" "$P_MEF_METRICS" "$P_MAF_METRICS" "$P_MAF_DTLS" \
        "$TLS13" "$EB_ID" "$KPM_B_ID" "$ENROLEE_B_ID" "$P_EB" "$P_EB_DTLS" "$P_EB_METRICS" \
        "$tokens" "$SOFTHSM_MODULE" "${KIND_ACCEPT_EXTRACTABLE:-0}" <<'EOF'
import json, os, sys
d, module, expiry, kpm_id, enrolee_id, mef_fqdn, maf_id = sys.argv[1:8]
p_tls, p_dtls, p_https, p_maf, p_mef_metrics, p_maf_metrics, p_maf_dtls = sys.argv[8:15]
tls13 = sys.argv[15] == "1"
eb_id, kpm_b_id, enrolee_b_id, p_eb, p_eb_dtls, p_eb_metrics = sys.argv[16:22]
tokens = json.loads(sys.argv[22])
softhsm = sys.argv[23]
accept_extractable = sys.argv[24] == "1"

def pkcs11(t):
    s = {"module": module, "token": tokens[t]["uri"],
         "pin_source": "file:%s/%s.pin" % (d, t), "lock_file": "%s/%s.lock" % (d, t)}
    if tokens[t]["init_args"]:
        s["module_init_args"] = tokens[t]["init_args"]
    if accept_extractable:
        s["accept_extractable_keys"] = True
    return s

# The TLS key on a SoftHSM token beside the kind's, where the kind cannot hold it.
def tls_key(cfg, t):
    kt = tokens[t]["tls_key_token"]
    if kt != t:
        # One lock file for the SoftHSM configuration these tokens share: its file backend
        # is unsafe across processes, and the servers open their tokens at once.
        cfg["tls_key_pkcs11"] = {"module": softhsm, "token": "pkcs11:token=" + kt,
                                 "pin_source": "file:%s/%s.pin" % (d, kt),
                                 "lock_file": d + "/tls-keys.lock"}

configs = {
    "mef": {
        "pkcs11": pkcs11("mef"),
        "mef": {"fqdn": mef_fqdn,
                "bootstrap_tls": "127.0.0.1:" + p_tls,
                "bootstrap_dtls": "127.0.0.1:" + p_dtls,
                "https": "127.0.0.1:" + p_https,
                "metrics": "127.0.0.1:" + p_mef_metrics,
                "certificate": d + "/mef.crt", "key_label": "mef-tls",
                "ca": d + "/ca.crt"},
        "enrolees": [{"kpm_id": kpm_id, "enrolee_id": enrolee_id,
                      "enrolment_target": maf_id, "enrolment_expiry": expiry},
                     {"kpm_id": kpm_b_id, "enrolee_id": enrolee_b_id,
                      "enrolment_target": eb_id, "enrolment_expiry": expiry}],
    },
    "maf": {
        "pkcs11": pkcs11("maf"),
        "maf": {"maf_id": maf_id, "listen": "127.0.0.1:" + p_maf,
                "metrics": "127.0.0.1:" + p_maf_metrics,
                "listen_dtls": "127.0.0.1:" + p_maf_dtls,
                "certificate": d + "/maf.crt", "key_label": "maf-tls",
                "ca": d + "/ca.crt"},
        "mefs": [{"fqdn": mef_fqdn, "url": "https://127.0.0.1:" + p_https}],
    },
    "eb": {
        "pkcs11": pkcs11("eb"),
        "enrolee_b": {"enrolee_b_id": eb_id, "listen": "127.0.0.1:" + p_eb,
                      "metrics": "127.0.0.1:" + p_eb_metrics,
                      "listen_dtls": "127.0.0.1:" + p_eb_dtls,
                      "certificate": d + "/eb.crt", "key_label": "eb-tls",
                      "ca": d + "/ca.crt"},
        "mefs": [{"fqdn": mef_fqdn, "url": "https://127.0.0.1:" + p_https}],
    },
    # The second device: its Kpm, and its Enrolment Target the Enrolee B (so Kpsa, 10.3.3).
    "enrolee_b": {
        "pkcs11": pkcs11("enrolee"),
        "enrolee": {"kpm_id": kpm_b_id, "enrolee_id": enrolee_b_id,
                    "enrolment_target": eb_id, "enrolment_expiry": expiry,
                    "mef_fqdn": mef_fqdn, "mef_uri": "tls://127.0.0.1:" + p_tls,
                    "target_uri": "tls://127.0.0.1:" + p_eb, "renewal_margin": 0},
    },
    "enrolee": {
        "pkcs11": pkcs11("enrolee"),
        "enrolee": {"kpm_id": kpm_id, "enrolee_id": enrolee_id,
                    "enrolment_target": maf_id, "enrolment_expiry": expiry,
                    "mef_fqdn": mef_fqdn, "mef_uri": "tls://127.0.0.1:" + p_tls,
                    "target_uri": "tls://127.0.0.1:" + p_maf, "renewal_margin": 0},
    },
}
# TLS 1.3 beside TLS 1.2 on the MEF's TLS bootstrap and the MAF's TCP port; the device
# keeps tls:// (TLS 1.2) unless a test changes it.
tls_key(configs["mef"], "mef")
tls_key(configs["maf"], "maf")
tls_key(configs["eb"], "eb")
if tls13:
    configs["mef"]["mef"]["tls13"] = True
    configs["maf"]["maf"]["tls13"] = True
    configs["eb"]["enrolee_b"]["tls13"] = True
for name, cfg in configs.items():
    with open(os.path.join(d, name + ".json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
EOF
}

# export NAME='VALUE', quoted for any VALUE.
env_line() {
    local q="'\\''"
    printf "export %s='%s'\n" "$1" "${2//\'/$q}"
}

write_env() {
    {
        echo "# m2mhsm lab made by hsm-config/lab.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)."
        echo "# for tests only: M2M_KPM_HEX_FILE and M2M_KPM_B_HEX_FILE hold the test Kpm"
        echo "# (and *_PIN_FILE name the tokens' PIN files; never print either)"
        echo "# Source it: . $lab_dir/lab.env"
        env_line M2M_LAB "$lab_dir"
        env_line M2M_BIN "$BIN"
        env_line M2M_TOKEN_KIND "$KIND"
        env_line M2M_MODULE "$MODULE"
        env_line SOFTHSM2_CONF "$lab_dir/softhsm2.conf"
        local t up
        for t in "${TOKENS[@]}"; do
            up=${t^^}
            env_line "M2M_${up}_TOKEN" "$(token_uri "$lab_dir" "$t")"
            # C_Initialize's init args for this token (softokn), empty if it needs none: run
            # m2mhsm on it as M2MHSM_MODULE_INIT_ARGS=$M2M_MEF_INIT_ARGS m2mhsm ...
            env_line "M2M_${up}_INIT_ARGS" "$(init_args "$lab_dir" "$t")"
        done
        env_line M2M_MEF_PIN_FILE "$lab_dir/mef.pin"
        env_line M2M_MAF_PIN_FILE "$lab_dir/maf.pin"
        env_line M2M_ENROLEE_PIN_FILE "$lab_dir/enrolee.pin"
        env_line M2M_EB_PIN_FILE "$lab_dir/eb.pin"
        env_line M2M_MEF_LOCK_FILE "$lab_dir/mef.lock"
        env_line M2M_MAF_LOCK_FILE "$lab_dir/maf.lock"
        env_line M2M_ENROLEE_LOCK_FILE "$lab_dir/enrolee.lock"
        env_line M2M_EB_LOCK_FILE "$lab_dir/eb.lock"
        env_line M2M_MEF_CONFIG "$lab_dir/mef.json"
        env_line M2M_MAF_CONFIG "$lab_dir/maf.json"
        env_line M2M_ENROLEE_CONFIG "$lab_dir/enrolee.json"
        env_line M2M_EB_CONFIG "$lab_dir/eb.json"
        env_line M2M_ENROLEE_B_CONFIG "$lab_dir/enrolee_b.json"
        env_line M2M_MEF_PORT "$P_TLS"
        env_line M2M_MEF_DTLS_PORT "$P_DTLS"
        env_line M2M_MEF_HTTPS_PORT "$P_HTTPS"
        env_line M2M_MAF_PORT "$P_MAF"
        env_line M2M_MEF_METRICS_PORT "$P_MEF_METRICS"
        env_line M2M_MAF_METRICS_PORT "$P_MAF_METRICS"
        env_line M2M_MAF_DTLS_PORT "$P_MAF_DTLS"
        env_line M2M_EB_PORT "$P_EB"
        env_line M2M_EB_DTLS_PORT "$P_EB_DTLS"
        env_line M2M_EB_METRICS_PORT "$P_EB_METRICS"
        env_line M2M_MEF_FQDN "$MEF_FQDN"
        env_line M2M_MAF_ID "$MAF_ID"
        env_line M2M_KPM_ID "$KPM_ID"
        env_line M2M_KPM_HEX_FILE "$lab_dir/kpm.hex"
        env_line M2M_ENROLEE_ID "$ENROLEE_ID"
        env_line M2M_EB_ID "$EB_ID"
        env_line M2M_KPM_B_ID "$KPM_B_ID"
        env_line M2M_KPM_B_HEX_FILE "$lab_dir/kpm-b.hex"
        env_line M2M_ENROLEE_B_ID "$ENROLEE_B_ID"
        env_line M2M_EXPIRY "$EXPIRY"
        env_line M2M_CA_CERT "$lab_dir/ca.crt"
        env_line M2M_MEF_CERT "$lab_dir/mef.crt"
        env_line M2M_MAF_CERT "$lab_dir/maf.crt"
        env_line M2M_EB_CERT "$lab_dir/eb.crt"
        # Last: a kind may override the lines above (softhsm-remote: M2M_MODULE).
        if kind_has kind_env; then kind_env "$lab_dir"; fi
    } > "$lab_dir/lab.env"
}

# The m2mhsm programs: set_bin BUILD_DIR BIN_DIR (BIN_DIR, if not empty, wins)
set_bin() {
    local build=$1 bin_dir=$2
    if [ -n "$bin_dir" ]; then # installed programs (a package, cmake --install)
        BIN=$(cd "$bin_dir" 2> /dev/null && pwd) || die "--bin: '$bin_dir' is not a directory"
    else
        [ -d "$build" ] || die "--build: '$build' is not a directory (build the project first)"
        BIN=$(cd "$build/src/apps" 2> /dev/null && pwd) ||
            die "'$build/src/apps' does not exist: build the project (cmake --build) or pass --build"
    fi
    [ -x "$BIN/m2mhsm" ] || die "'$BIN/m2mhsm' is missing: build the project first"
}

# Make DIR (new or empty) the lab directory, private, emptied again if what follows fails.
fresh_dir() {
    local dir=$1
    if [ -e "$dir" ]; then
        [ -d "$dir" ] || die "'$dir' exists and is not a directory"
        [ -z "$(find "$dir" -mindepth 1 -maxdepth 1 -print -quit)" ] ||
            die "'$dir' is not empty; refusing to make a lab there (use a new directory)"
    fi
    lab_dir=$(abs_dir "$dir")
    umask 077 # PIN files, Kpm, CA key: 0600; everything else private too
    mkdir -p -- "$lab_dir"
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/m2mhsm-lab.XXXXXX")
    trap init_cleanup EXIT
    trap 'exit 130' INT TERM
}

cmd_init() {
    local dir="" build="$repo/build" bin_dir="" kind=softhsm
    EXPIRY=86400 TLS13=0
    while [ $# -gt 0 ]; do
        case $1 in
            --expiry | --build | --bin)
                [ $# -ge 2 ] || die "init: $1 needs a value"
                case $1 in
                    --expiry) EXPIRY=$2 ;;
                    --build) build=$2 ;;
                    --bin) bin_dir=$2 ;;
                esac
                shift 2
                ;;
            --expiry=*) EXPIRY=${1#*=} && shift ;;
            --tls13) TLS13=1 && shift ;;
            --token-kind)
                [ $# -ge 2 ] || die "init: $1 needs a value"
                kind=$2 && shift 2
                ;;
            --token-kind=*) kind=${1#*=} && shift ;;
            --build=*) build=${1#*=} && shift ;;
            --bin=*) bin_dir=${1#*=} && shift ;;
            -*) die "init: unknown option '$1'" ;;
            *)
                [ -z "$dir" ] || die "init: one DIR only (got '$dir' and '$1')"
                dir=$1 && shift
                ;;
        esac
    done
    [ -n "$dir" ] || usage
    [[ $EXPIRY =~ ^[1-9][0-9]*$ || $EXPIRY =~ ^[0-9]{8}T[0-9]{6}(,[0-9]{1,6})?$ ]] ||
        die "--expiry: '$EXPIRY' is neither seconds (1 or more) nor an m2m:timestamp YYYYMMDDThhmmss"

    need openssl pkcs11-tool python3 cmp
    set_bin "$build" "$bin_dir"
    load_kind "$kind"
    MODULE=$KIND_MODULE
    if [ "$KIND" = softhsm ]; then # as before kinds: M2M_MODULE may name another SoftHSM build
        MODULE=${M2M_MODULE:-$KIND_MODULE}
        SOFTHSM_MODULE=$MODULE
    fi
    [ -r "$MODULE" ] || die "PKCS#11 module '$MODULE' not found (scripts/deps.sh installs it)"

    fresh_dir "$dir"

    # 1. Four tokens of the kind (and a SoftHSM configuration for what it cannot hold).
    unset M2MHSM_TOKEN M2MHSM_PIN_SOURCE M2MHSM_LOCK_FILE M2MHSM_MODULE M2MHSM_MODULE_INIT_ARGS
    printf '%s\n' "$KIND" > "$lab_dir/token-kind"
    softhsm_prepare "$lab_dir"
    if kind_has kind_prepare; then kind_prepare "$lab_dir"; fi
    local t
    for t in "${TOKENS[@]}"; do make_token "$t"; done

    # 2. The CA and the MEF / MAF / Enrolee B certificates (keys in their tokens).
    make_ca
    make_cert mef "$MEF_FQDN" 01
    make_cert maf "$MAF_ID" 02
    make_cert eb "$EB_FQDN" 03

    # 3. The test Kpm, in the MEF's and the Enrolee's tokens; the second device's likewise.
    openssl rand -hex 32 > "$lab_dir/kpm.hex"
    import_kpm mef
    import_kpm enrolee
    openssl rand -hex 32 > "$lab_dir/kpm-b.hex"
    import_kpm mef "$KPM_B_ID" "$lab_dir/kpm-b.hex"
    import_kpm enrolee "$KPM_B_ID" "$lab_dir/kpm-b.hex"

    # 4. Ports.
    local ports
    ports=$(free_ports) || die "could not find free loopback ports"
    read -r P_TLS P_DTLS P_HTTPS P_MAF P_MEF_METRICS P_MAF_METRICS P_MAF_DTLS \
        P_EB P_EB_DTLS P_EB_METRICS <<< "$ports"
    [ -n "${P_EB_METRICS:-}" ] || die "could not find free loopback ports"

    # 5, 6. Configurations and the environment.
    write_configs || die "writing the JSON configurations failed"
    write_env

    # 7. A kind whose tokens are served by processes of their own (softhsm-remote): they run
    # from here until clean, as an HSM is there before the services start and after they stop
    # (the CLI and the device work on a lab that is not started; stop-token takes one away).
    if kind_has kind_start; then kind_start "$lab_dir"; fi

    init_ok=1
    say "MEF: TLS bootstrap 127.0.0.1:$P_TLS, DTLS bootstrap 127.0.0.1:$P_DTLS (udp)," \
        "HTTPS 127.0.0.1:$P_HTTPS, metrics http://127.0.0.1:$P_MEF_METRICS/metrics;" \
        "MAF: 127.0.0.1:$P_MAF, DTLS 127.0.0.1:$P_MAF_DTLS (udp)," \
        "metrics http://127.0.0.1:$P_MAF_METRICS/metrics;" \
        "Enrolee B $EB_ID: 127.0.0.1:$P_EB, DTLS 127.0.0.1:$P_EB_DTLS (udp)," \
        "metrics http://127.0.0.1:$P_EB_METRICS/metrics;" \
        "Enrolment Expiry $EXPIRY"
    say "lab ready: . $lab_dir/lab.env; $0 start $lab_dir"
}

# ---------------------------------------------------------------------------------- tokens

# tokens DIR [--token-kind KIND] [--build BUILD_DIR | --bin BIN_DIR] LABEL...: throwaway tokens
# of a kind and nothing else, for suites that bring their own keys (the cmocka token suites,
# the interop scripts). DIR/tokens.env carries, for each LABEL (upper case, - as _), the same
# M2M_<LABEL>_TOKEN, _INIT_ARGS, _PIN_FILE, _SO_PIN_FILE and _LOCK_FILE a lab.env has, plus
# M2M_MODULE, M2M_TOKEN_KIND and what the kind adds (softhsm-remote: M2M_<LABEL>_P11_ADDRESS,
# whose server is already running). `clean DIR` stops and releases them.
# tokens DIR --add [--build BUILD_DIR | --bin BIN_DIR] LABEL...: more tokens of DIR's kind in
# DIR, for a suite that asks for its tokens one by one; tokens.env is written again for all of
# them, and the kind's daemons are restarted so that the one-address-for-all ones (the
# softhsm-remote ALL server) serve the new tokens too: connections to them break.
cmd_tokens() {
    local dir="" build="$repo/build" bin_dir="" kind=softhsm labels=() t add=0
    while [ $# -gt 0 ]; do
        case $1 in
            --token-kind | --build | --bin)
                [ $# -ge 2 ] || die "tokens: $1 needs a value"
                case $1 in
                    --token-kind) kind=$2 ;;
                    --build) build=$2 ;;
                    --bin) bin_dir=$2 ;;
                esac
                shift 2
                ;;
            --add)
                add=1
                shift
                ;;
            -*) die "tokens: unknown option '$1'" ;;
            *)
                if [ -z "$dir" ]; then dir=$1; else labels+=("$1"); fi
                shift
                ;;
        esac
    done
    [ -n "$dir" ] && [ ${#labels[@]} -gt 0 ] || usage
    for t in "${labels[@]}"; do
        [[ $t =~ ^[a-z][a-z0-9-]{0,23}$ ]] ||
            die "tokens: label '$t': use 1 to 24 of a-z, 0-9 and -, starting with a letter"
    done
    set_bin "$build" "$bin_dir"
    TOKENS=()
    if [ "$add" = 1 ]; then
        [ -f "$dir/tokens.env" ] || die "tokens --add: '$dir' has no tokens.env (make it with 'tokens DIR LABEL...')"
        lab_dir=$(abs_dir "$dir")
        kind=$(< "$lab_dir/token-kind")
        mapfile -t TOKENS < "$lab_dir/token-labels"
        for t in "${labels[@]}"; do
            [[ " ${TOKENS[*]} " != *" $t "* ]] || die "tokens --add: '$dir' has a token '$t' already"
        done
        umask 077
    fi
    load_kind "$kind"
    MODULE=$KIND_MODULE
    [ -r "$MODULE" ] || die "PKCS#11 module '$MODULE' not found (scripts/deps.sh installs it)"
    if [ "$add" = 0 ]; then fresh_dir "$dir"; fi
    unset M2MHSM_TOKEN M2MHSM_PIN_SOURCE M2MHSM_LOCK_FILE M2MHSM_MODULE M2MHSM_MODULE_INIT_ARGS
    printf '%s\n' "$KIND" > "$lab_dir/token-kind"
    softhsm_prepare "$lab_dir"
    if kind_has kind_prepare; then kind_prepare "$lab_dir"; fi
    if [ "$add" = 1 ] && kind_has kind_stop; then kind_stop "$lab_dir"; fi
    for t in "${labels[@]}"; do
        make_token "$t"
        TOKENS+=("$t")
        printf '%s\n' "${TOKENS[@]}" > "$lab_dir/token-labels" # clean releases what exists
    done
    tokens_env > "$lab_dir/tokens.env.new"
    mv -f -- "$lab_dir/tokens.env.new" "$lab_dir/tokens.env"
    if kind_has kind_start; then kind_start "$lab_dir"; fi
    init_ok=1
    say "tokens ready: . $lab_dir/tokens.env; $0 clean $lab_dir"
}

tokens_env() {
    local t up
    echo "# throwaway $KIND tokens made by hsm-config/lab.sh tokens; PIN files: never print them"
    env_line M2M_LAB "$lab_dir"
    env_line M2M_TOKEN_KIND "$KIND"
    env_line M2M_MODULE "$MODULE"
    env_line SOFTHSM2_CONF "$lab_dir/softhsm2.conf"
    for t in "${TOKENS[@]}"; do
        up=${t^^} && up=${up//-/_}
        env_line "M2M_${up}_TOKEN" "$(token_uri "$lab_dir" "$t")"
        env_line "M2M_${up}_INIT_ARGS" "$(init_args "$lab_dir" "$t")"
        env_line "M2M_${up}_PIN_FILE" "$lab_dir/$t.pin"
        env_line "M2M_${up}_SO_PIN_FILE" "$lab_dir/$t.so.pin"
        env_line "M2M_${up}_LOCK_FILE" "$lab_dir/$t.lock"
    done
    if kind_has kind_env; then kind_env "$lab_dir"; fi
}

# ---------------------------------------------------------------------------- start/stop

lab_env() {
    [ -n "${1:-}" ] || usage
    [ -d "$1" ] || die "'$1' is not a lab directory"
    lab_dir=$(abs_dir "$1")
    [ -f "$lab_dir/lab.env" ] || die "'$lab_dir/lab.env' is missing: run '$prog init $1' first"
    # shellcheck source=/dev/null
    . "$lab_dir/lab.env"
    load_kind "${M2M_TOKEN_KIND:-softhsm}"
}

# The address of ROLE's token server, for kinds that serve tokens remotely (else empty).
p11_address() {
    local v="M2M_${1^^}_P11_ADDRESS"
    printf '%s\n' "${!v:-}"
}

# Is PID a live (not zombie) process whose command line names SERVER's program?
# alive PID SERVER
alive() {
    local pid=$1 s=$2 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2> /dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2> /dev/null | grep -q -- "m2m-$s" || return 1
}

# The pid in SERVER's pid file if that process is running, else nothing.
running_pid() {
    local f="$lab_dir/$1.pid" pid
    [ -f "$f" ] || return 0
    pid=$(< "$f")
    if alive "$pid" "$1"; then printf '%s\n' "$pid"; fi
}

# Is something in SERVER's session (the server and any children) listening on TCP PORT?
listening() {
    local pid=$1 port=$2 p
    if command -v ss > /dev/null; then
        local users
        users=$(ss -Hltnp "sport = :$port" 2> /dev/null) || return 1
        for p in $(ps -o pid= -s "$pid" 2> /dev/null); do
            [[ $users == *"pid=$p,"* ]] && return 0
        done
        return 1
    fi
    # No ss: try a connection (the server logs an aborted handshake).
    (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null
}

show_log() {
    local log="$lab_dir/$1.log"
    printf '%s: %s since this start (last 20 lines):\n' "$prog" "$log" >&2
    awk '/^=== .*: lab[.]sh start$/ { n = 0; next } { line[n++] = $0 }
         END { for (i = (n > 20 ? n - 20 : 0); i < n; i++) print line[i] }' \
        "$log" >&2 2> /dev/null || true
}

# Start one server: launch SERVER CONFIG
launch() {
    local s=$1 cfg=$2 i
    local pidfile="$lab_dir/$s.pid"
    printf '=== %s: lab.sh start\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$lab_dir/$s.log"
    # The pid is written by the process that then becomes the server (exec).
    # shellcheck disable=SC2016
    # P11_KIT_SERVER_ADDRESS is per process: each server gets its own token's.
    P11_KIT_SERVER_ADDRESS=$(p11_address "$s") \
        setsid bash -c 'echo "$$" > "$1.tmp" && mv -f "$1.tmp" "$1" && exec "${@:2}"' \
        lab-start "$pidfile" "$M2M_BIN/m2m-$s" --config "$cfg" \
        {LAB_STDERR}>&- < /dev/null >> "$lab_dir/$s.log" 2>&1 &
    for ((i = 0; i < 50; i++)); do
        [ -s "$pidfile" ] && return 0
        sleep 0.1
    done
    printf '%s: error: m2m-%s did not start (no %s)\n' "$prog" "$s" "$pidfile" >&2
    show_log "$s"
    stop_all
    exit 1
}

cmd_start() {
    lab_env "${1:-}"
    [ $# -eq 1 ] || usage
    need setsid ps
    local s pid
    for s in "${SERVERS[@]}"; do
        [ -x "$M2M_BIN/m2m-$s" ] ||
            die "'$M2M_BIN/m2m-$s' is missing: build the project (cmake --build) first"
        pid=$(running_pid "$s")
        [ -z "$pid" ] || die "m2m-$s is already running (pid $pid); run '$prog stop $lab_dir' first"
        rm -f -- "$lab_dir/$s.pid"
    done

    if kind_has kind_start; then kind_start "$lab_dir"; fi
    launch mef "$M2M_MEF_CONFIG"
    launch maf "$M2M_MAF_CONFIG"
    launch eb "$M2M_EB_CONFIG"
    local mef_pid maf_pid eb_pid
    mef_pid=$(< "$lab_dir/mef.pid")
    maf_pid=$(< "$lab_dir/maf.pid")
    eb_pid=$(< "$lab_dir/eb.pid")
    local -A pid_of=([mef]=$mef_pid [maf]=$maf_pid [eb]=$eb_pid)

    # Ready when the MEF's TLS bootstrap and HTTPS ports, the MAF's and the Enrolee B's ports
    # are listening.
    local deadline=$((SECONDS + START_TIMEOUT)) failed="" why=""
    while :; do
        for s in "${SERVERS[@]}"; do
            pid=${pid_of[$s]}
            if ! alive "$pid" "$s"; then
                local rc=0
                wait "$pid" 2> /dev/null || rc=$?
                failed=$s why="m2m-$s exited (status $rc) before it was ready"
                rm -f -- "$lab_dir/$s.pid"
                break 2
            fi
        done
        if listening "$mef_pid" "$M2M_MEF_PORT" && listening "$mef_pid" "$M2M_MEF_HTTPS_PORT" &&
            listening "$maf_pid" "$M2M_MAF_PORT" && listening "$eb_pid" "$M2M_EB_PORT"; then
            break
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            local p missing=""
            for p in "$M2M_MEF_PORT" "$M2M_MEF_HTTPS_PORT"; do
                listening "$mef_pid" "$p" || missing+=" $p"
            done
            if [ -n "$missing" ]; then
                failed=mef why="m2m-mef is not listening on 127.0.0.1 TCP port(s)$missing after ${START_TIMEOUT}s"
            elif ! listening "$maf_pid" "$M2M_MAF_PORT"; then
                failed=maf why="m2m-maf is not listening on 127.0.0.1 TCP port $M2M_MAF_PORT after ${START_TIMEOUT}s"
            else
                failed=eb why="m2m-eb is not listening on 127.0.0.1 TCP port $M2M_EB_PORT after ${START_TIMEOUT}s"
            fi
            break
        fi
        sleep 0.2
    done
    if [ -n "$failed" ]; then
        printf '%s: error: %s\n' "$prog" "$why" >&2
        show_log "$failed"
        stop_all
        exit 1
    fi
    say "m2m-mef (pid $mef_pid): TLS 127.0.0.1:$M2M_MEF_PORT, DTLS 127.0.0.1:$M2M_MEF_DTLS_PORT," \
        "HTTPS 127.0.0.1:$M2M_MEF_HTTPS_PORT, metrics 127.0.0.1:${M2M_MEF_METRICS_PORT:-none};" \
        "log $lab_dir/mef.log"
    say "m2m-maf (pid $maf_pid): TLS 127.0.0.1:$M2M_MAF_PORT," \
        "DTLS 127.0.0.1:${M2M_MAF_DTLS_PORT:-none}," \
        "metrics 127.0.0.1:${M2M_MAF_METRICS_PORT:-none}; log $lab_dir/maf.log"
    say "m2m-eb (pid $eb_pid) $M2M_EB_ID: TLS 127.0.0.1:$M2M_EB_PORT," \
        "DTLS 127.0.0.1:${M2M_EB_DTLS_PORT:-none}," \
        "metrics 127.0.0.1:${M2M_EB_METRICS_PORT:-none}; log $lab_dir/eb.log"
}

# Is any process of the session (= process group) that `start` made for PID still alive?
session_alive() {
    # shellcheck disable=SC2009 # pgrep would count zombies (a failed start's, not yet reaped)
    ps -o stat= -s "$1" 2> /dev/null | grep -qv '^Z'
}

# SIGTERM every running server's process group (the server and any children it forked),
# wait up to STOP_TIMEOUT for all of them to exit, then SIGKILL what is left.
stop_all() {
    local s pid i
    local -A pids=()
    for s in "${SERVERS[@]}"; do
        pid=$(running_pid "$s")
        if [ -z "$pid" ]; then
            if [ -f "$lab_dir/$s.pid" ]; then
                say "m2m-$s was not running (stale pid file removed)"
            else
                say "m2m-$s is not running"
            fi
            rm -f -- "$lab_dir/$s.pid"
            continue
        fi
        kill -TERM -- "-$pid" 2> /dev/null || kill -TERM "$pid" 2> /dev/null || true
        pids[$s]=$pid
    done
    local deadline=$((SECONDS + STOP_TIMEOUT)) left
    while :; do
        left=0
        for s in "${!pids[@]}"; do
            if session_alive "${pids[$s]}"; then left=1; fi
        done
        if [ "$left" = 0 ] || [ "$SECONDS" -ge "$deadline" ]; then break; fi
        sleep 0.1
    done
    for s in "${SERVERS[@]}"; do
        [ -n "${pids[$s]:-}" ] || continue
        pid=${pids[$s]}
        if session_alive "$pid"; then
            kill -KILL -- "-$pid" 2> /dev/null || kill -KILL "$pid" 2> /dev/null || true
            for ((i = 0; i < 20; i++)); do
                session_alive "$pid" || break
                sleep 0.1
            done
            say "m2m-$s (pid $pid) was still running ${STOP_TIMEOUT}s after SIGTERM: sent SIGKILL"
        else
            say "m2m-$s (pid $pid) stopped"
        fi
        wait "$pid" 2> /dev/null || true # reaps it if this shell started it
        rm -f -- "$lab_dir/$s.pid"
    done
    # A remote kind's token servers stay (they go with clean, or one by one with stop-token).
}

cmd_stop() {
    lab_env "${1:-}"
    [ $# -eq 1 ] || usage
    need ps
    stop_all
}

# Stop, release what the kind holds outside the lab (opencryptoki's pool slots), remove DIR.
cmd_clean() {
    [ $# -eq 1 ] || usage
    [ -d "$1" ] || return 0
    lab_dir=$(abs_dir "$1")
    if [ -f "$lab_dir/lab.env" ]; then
        cmd_stop "$1"
    fi
    load_kind "$(cat "$lab_dir/token-kind" 2> /dev/null || echo softhsm)"
    if [ -f "$lab_dir/tokens.env" ]; then # made by `tokens`: no services, the kind's daemons
        mapfile -t TOKENS < "$lab_dir/token-labels"
        if kind_has kind_stop; then kind_stop "$lab_dir"; fi
    fi
    if kind_has kind_clean; then kind_clean "$lab_dir"; fi
    rm -rf -- "$lab_dir"
}

# restart-token, stop-token, start-token: cmd_token WHAT DIR ROLE
cmd_token() {
    local what=$1
    shift
    lab_env "${1:-}"
    [ $# -eq 2 ] || usage
    [[ " ${TOKENS[*]} " == *" $2 "* ]] || die "$what-token: ROLE is one of: ${TOKENS[*]}"
    kind_has "kind_${what}_token" ||
        die "$what-token: token kind '$KIND' has no token server to $what"
    "kind_${what}_token" "$lab_dir" "$2"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
    init) cmd_init "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    clean) cmd_clean "$@" ;;
    tokens) cmd_tokens "$@" ;;
    restart-token) cmd_token restart "$@" ;;
    stop-token) cmd_token stop "$@" ;;
    start-token) cmd_token start "$@" ;;
    -h | --help | help) usage ;;
    *) die "unknown command '$cmd' (init, tokens, start, stop, clean, restart-token, stop-token or start-token)" ;;
esac
