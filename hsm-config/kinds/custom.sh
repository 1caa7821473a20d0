# Token kind "custom": a vendor's module and tokens initialised beforehand with the vendor's
# tools, to run the lab and the e2e suites on a new HSM (docs/deployment-hsm.md). All from the
# environment:
#   M2M_CUSTOM_MODULE          the PKCS#11 module (required)
#   M2M_CUSTOM_INIT_ARGS       its C_Initialize init args, if it needs any; per token
#   M2M_CUSTOM_<T>_INIT_ARGS   where they differ (softokn: one database each)
#   M2M_CUSTOM_<T>_TOKEN       for T in MEF, MAF, ENROLEE, EB: the RFC 7512 URI of an
#                              initialised token that holds no m2mhsm records yet (required)
#   M2M_CUSTOM_<T>_PIN_FILE    its user PIN file; copied into the lab (0600) (required)
#   M2M_CUSTOM_EC=1            the servers' TLS key pairs are generated on the mef and maf
#                              tokens with pkcs11-tool (URI with token=LABEL, no init args);
#                              else (default) on SoftHSM tokens beside them (tls_key_pkcs11)
#   M2M_CUSTOM_ACCEPT_EXTRACTABLE=1  the lab's service configurations accept a token that
#                              fails the start-up self-test ("accept_extractable_keys": true,
#                              docs/tokens.md, "Self-test"): the services then start on it and
#                              warn at every start. Default 0: they refuse such a token.
# Nothing is created on or removed from the tokens but what the lab writes (the test Kpm, the
# TLS key pairs): give every lab (and so every e2e suite) freshly initialised tokens.
# See hsm-config/kinds/softhsm.sh for the interface.

KIND_MODULE=${M2M_CUSTOM_MODULE:-}
KIND_PIN_CHARS=8 # unused: the PINs are the vendor's
KIND_EC=${M2M_CUSTOM_EC:-0}
KIND_ACCEPT_EXTRACTABLE=${M2M_CUSTOM_ACCEPT_EXTRACTABLE:-0}

custom_var() { # custom_var LABEL SUFFIX: the value of M2M_CUSTOM_<LABEL>_<SUFFIX>, required
    local v="M2M_CUSTOM_${1^^}_$2"
    [ -n "${!v:-}" ] || die "custom kind: $v is not set (hsm-config/kinds/custom.sh)"
    printf '%s\n' "${!v}"
}

kind_prepare() {
    [ -n "$KIND_MODULE" ] || die "custom kind: M2M_CUSTOM_MODULE is not set"
    # A typo must not silently leave the services refusing (or accepting) the token.
    [[ $KIND_ACCEPT_EXTRACTABLE =~ ^[01]$ ]] ||
        die "custom kind: M2M_CUSTOM_ACCEPT_EXTRACTABLE is '$KIND_ACCEPT_EXTRACTABLE': use 1 (accept a token that lets keys out) or 0"
}

kind_make_token() {
    local label=$2 pin=$4 src
    custom_var "$label" TOKEN > /dev/null
    src=$(custom_var "$label" PIN_FILE)
    [ -r "$src" ] || die "custom kind: cannot read $src"
    cat -- "$src" > "$pin"
}

kind_token_uri() { custom_var "$2" TOKEN; }
kind_init_args() {
    local v="M2M_CUSTOM_${2^^}_INIT_ARGS"
    printf '%s\n' "${!v:-${M2M_CUSTOM_INIT_ARGS:-}}"
}

kind_keypair() {
    local dir=$1 label=$2 key_label=$3 id=$4 pub=$5 uri tl
    uri=$(custom_var "$label" TOKEN)
    [[ $uri =~ token=([^\;?]+) ]] || die "custom kind: $uri names no token= label for pkcs11-tool"
    tl=$(printf '%b' "${BASH_REMATCH[1]//%/\\x}")
    quiet "generating the $key_label key pair in '$tl'" \
        p11tool_login "$KIND_MODULE" "$tl" "$dir/$label.pin" \
        --keypairgen --key-type EC:prime256v1 --usage-sign --label "$key_label" --id "$id"
    quiet "reading the $key_label public key" \
        pkcs11-tool --module "$KIND_MODULE" --token-label "$tl" \
        --read-object --type pubkey --label "$key_label" -o "$pub"
}

kind_env() { :; }
kind_start() { :; }
kind_stop() { :; }
kind_clean() { :; }
