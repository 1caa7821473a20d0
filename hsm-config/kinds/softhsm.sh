# shellcheck shell=bash
# Token kind "softhsm": SoftHSM 2 in-process, one configuration DIR/softhsm2.conf whose tokens
# live in DIR/tokens. Always sourced by hsm-config/lab.sh, before any other kind: it is the
# default, and lab.sh uses the softhsm_* functions for the SoftHSM tokens it puts beside other
# kinds (the servers' TLS keys on opencryptoki).
#
# The interface of hsm-config/kinds/KIND.sh (lab.sh runs with set -euo pipefail, and has $BIN
# (the m2mhsm programs), say, die and quiet). A kind sets the KIND_* variables and defines
# the kind_* functions where it differs from softhsm; lab.sh calls a function only if the
# kind defines it (kind_has), else does what softhsm does (nothing, for the optional ones):
#   KIND_MODULE            the PKCS#11 module (M2M_MODULE overrides it where the kind allows)
#   KIND_PIN_CHARS         length of the random hex PINs lab.sh writes (the module's limits)
#   KIND_EC                1 if the lab can make the servers' EC P-256 TLS keys on it (else
#                          they go on SoftHSM tokens beside it: tls_key_pkcs11)
#   KIND_ACCEPT_EXTRACTABLE  1 if the token fails the self-test (keys can leave it) and the
#                          lab's services are to run on it anyway (accept_extractable_keys)
#   kind_prepare DIR       module configuration, daemons; once per lab, before any token
#   kind_make_token DIR LABEL SO_PIN_FILE PIN_FILE   a throwaway token labelled LABEL
#   kind_token_uri DIR LABEL        its RFC 7512 URI (one token exactly)
#   kind_init_args DIR LABEL        the C_Initialize init args its users need, or nothing
#   kind_keypair DIR LABEL KEY_LABEL ID PUB_DER      an EC P-256 key pair in the token
#                                   (sensitive, sign only), its public key as DER to PUB_DER
#   kind_env DIR           `export VAR=...` lines that lab.env needs besides the M2M_* ones
#   kind_start DIR         daemons the lab's processes need (no-ops in-process), started at
#                          the end of init and again (idempotent) by lab.sh start; they run
#                          until clean: lab.sh stop stops the services only
#   kind_stop DIR          stop those daemons (kind_clean calls it where it needs to)
#   kind_clean DIR         release what the lab holds outside DIR (lab.sh clean)
#   kind_restart_token / kind_stop_token / kind_start_token DIR LABEL
#                          take a token away and bring it back (lab.sh restart-token ...;
#                          kinds that serve tokens remotely)

SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so

softhsm_prepare() {
    local dir=$1
    [ -f "$dir/softhsm2.conf" ] || bash "$here/softhsm-conf.sh" "$dir"
    export SOFTHSM2_CONF="$dir/softhsm2.conf"
}

softhsm_make_token() {
    local dir=$1 label=$2 so_pin=$3 pin=$4
    SOFTHSM2_CONF="$dir/softhsm2.conf" quiet "initialising token '$label'" \
        env -u M2MHSM_MODULE_INIT_ARGS "$BIN/m2mhsm" --module "$SOFTHSM_MODULE" \
        --lock-file "$dir/$label.lock" --pin-source "file:$pin" \
        token-init --label "$label" --so-pin-source "file:$so_pin"
}

# pkcs11-tool logged in to a token, its PIN through the environment of this one command
# (OpenSC's `--pin env:VAR`): p11tool_login MODULE LABEL PIN_FILE ARGS...
p11tool_login() {
    local module=$1 label=$2 pin=$3
    shift 3
    M2M_LAB_P11_PIN=$(< "$pin") pkcs11-tool --module "$module" --token-label "$label" \
        --login --pin env:M2M_LAB_P11_PIN "$@" < /dev/null
}

softhsm_keypair() {
    local dir=$1 label=$2 key_label=$3 id=$4 pub=$5
    SOFTHSM2_CONF="$dir/softhsm2.conf" quiet "generating the $key_label key pair in '$label'" \
        p11tool_login "$SOFTHSM_MODULE" "$label" "$dir/$label.pin" \
        --keypairgen --key-type EC:prime256v1 --usage-sign --label "$key_label" --id "$id"
    SOFTHSM2_CONF="$dir/softhsm2.conf" quiet "reading the $key_label public key" \
        pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$label" \
        --read-object --type pubkey --label "$key_label" -o "$pub"
}

# shellcheck disable=SC2034 # read by lab.sh, which sources this file
KIND_MODULE=$SOFTHSM_MODULE
# shellcheck disable=SC2034
KIND_PIN_CHARS=24
# shellcheck disable=SC2034
KIND_EC=1
