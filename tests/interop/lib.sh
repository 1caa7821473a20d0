# shellcheck shell=bash
# Shared helpers for the interop scripts: throwaway tokens of the run's token kind, the
# programs' way to them, and assertions.
# Usage: . lib.sh; lab_init NAME LABEL; token_ready LABEL; ...; finish
#   lab_init sets LAB, USER_PIN_FILE and SO_PIN_FILE (LABEL's) and TOKEN_KIND, and exports
#   what the m2mhsm CLI, tls_peer and crash_tool need to reach LABEL: M2MHSM_MODULE, and on
#   the kinds that need them M2MHSM_MODULE_INIT_ARGS, P11_KIT_SERVER_ADDRESS, M2MHSM_LOCK_FILE.
# M2MHSM_TOKEN_KIND (ctest interop_<script>@<kind>, docs/tokens.md): softhsm, the default,
# keeps a SoftHSM configuration in LAB whose token the script initialises itself (token_ready
# runs token-init); any other kind gets LABEL from `hsm-config/lab.sh tokens`, already
# initialised, and `lab.sh clean` releases what the kind holds (opencryptoki's pool slots)
# when the script exits, whatever way it exits: scripts with a trap of their own call
# lab_cleanup from it.
set -euo pipefail

: "${M2MHSM:?M2MHSM must name the m2mhsm binary}"
: "${M2MHSM_MODULE:=/usr/lib/softhsm/libsofthsm2.so}"
export M2MHSM_MODULE
TOKEN_KIND=${M2MHSM_TOKEN_KIND:-softhsm}
LABSH="$(dirname "${BASH_SOURCE[0]}")/../../hsm-config/lab.sh"

lab_cleanup() {
    [ -n "${LAB:-}" ] || return 0
    if [ -n "${KEEP_LAB:-}" ]; then
        [ "$TOKEN_KIND" = softhsm ] || echo "kept $LAB: 'hsm-config/lab.sh clean $LAB' releases it"
        return 0
    fi
    if [ "$TOKEN_KIND" = softhsm ]; then
        rm -rf "$LAB"
    else
        bash "$LABSH" clean "$LAB" > /dev/null 2>&1 || rm -rf "$LAB"
    fi
}

lab_init() {
    local name=$1 label=$2
    LAB=$(mktemp -d "${TMPDIR:-/tmp}/m2mhsm-$name.XXXXXX")
    trap lab_cleanup EXIT
    if [ "$TOKEN_KIND" = softhsm ]; then
        bash "$(dirname "${BASH_SOURCE[0]}")/../../hsm-config/softhsm-conf.sh" "$LAB"
        export SOFTHSM2_CONF="$LAB/softhsm2.conf"
        USER_PIN_FILE="$LAB/user.pin"
        SO_PIN_FILE="$LAB/so.pin"
        (umask 077; openssl rand -hex 12 > "$USER_PIN_FILE"; openssl rand -hex 12 > "$SO_PIN_FILE")
        return 0
    fi
    rmdir "$LAB" # lab.sh makes it, private
    if ! bash "$LABSH" tokens "$LAB" --token-kind "$TOKEN_KIND" --bin "$(dirname "$M2MHSM")" \
        "$label" > "$LAB.log" 2>&1; then
        cat "$LAB.log"
        rm -f "$LAB.log"
        exit 1
    fi
    rm -f "$LAB.log"
    # shellcheck disable=SC1091
    . "$LAB/tokens.env"
    local up=${label^^}
    up=${up//-/_}
    local uri="M2M_${up}_TOKEN" args="M2M_${up}_INIT_ARGS" pin="M2M_${up}_PIN_FILE"
    local so="M2M_${up}_SO_PIN_FILE" lock="M2M_${up}_LOCK_FILE"
    KIND_TOKEN_URI=${!uri}
    USER_PIN_FILE=${!pin}
    SO_PIN_FILE=${!so}
    export M2MHSM_MODULE=$M2M_MODULE M2MHSM_LOCK_FILE=${!lock}
    if [ -n "${!args}" ]; then export M2MHSM_MODULE_INIT_ARGS=${!args}; fi
    # p11-kit's client reaches one server per process (softhsm-remote)
    if [ -n "${M2M_P11_ADDRESS:-}" ]; then export P11_KIT_SERVER_ADDRESS=$M2M_P11_ADDRESS; fi
}

# token_uri LABEL: the RFC 7512 URI of the script's token. On opencryptoki it names the slot
# too: the labs running in parallel share labels.
token_uri() {
    if [ "$TOKEN_KIND" = softhsm ]; then echo "pkcs11:token=$1"; else echo "$KIND_TOKEN_URI"; fi
}

# token_ready LABEL: on softhsm the CLI initialises the token (a check); on another kind
# lab.sh made it, and the CLI opens it empty.
token_ready() {
    if [ "$TOKEN_KIND" = softhsm ]; then
        check "token-init" cli_token_init "$1"
    else
        check "the $TOKEN_KIND token '$1' from lab.sh tokens opens, empty" cli_opens_empty "$1"
    fi
}
cli_token_init() {
    "$M2MHSM" --token "pkcs11:token=$1" --pin-source "file:$USER_PIN_FILE" \
        token-init --label "$1" --so-pin-source "file:$SO_PIN_FILE" > /dev/null
}
cli_opens_empty() {
    local list
    list=$("$M2MHSM" --token "$(token_uri "$1")" --pin-source "file:$USER_PIN_FILE" list --json) &&
        [ "$list" = "[]" ]
}

# p11tool LABEL ARGS...: OpenSC's pkcs11-tool on the script's token (on opencryptoki, its slot).
# p11tool_module ARGS...: pkcs11-tool on the kind's module. pkcs11-tool cannot pass init
# args: on softokn it goes through tests/fault's forwarding module (M2M_FAULT), which adds
# them (M2M_FAULT_INIT_ARGS) and injects nothing.
p11tool() {
    local label=$1 sel
    shift
    sel=(--token-label "$label")
    if [ "$TOKEN_KIND" = opencryptoki ]; then
        sel=(--slot "$(sed -n 's/.*slot-id=\([0-9]*\).*/\1/p' <<< "$KIND_TOKEN_URI")")
    fi
    p11tool_module "${sel[@]}" "$@"
}
p11tool_module() {
    if [ -n "${M2MHSM_MODULE_INIT_ARGS:-}" ]; then
        : "${M2M_FAULT:?M2M_FAULT must name the m2mfault module (tests/fault) for pkcs11-tool on $TOKEN_KIND}"
        M2M_FAULT_MODULE=$M2MHSM_MODULE M2M_FAULT_INIT_ARGS=$M2MHSM_MODULE_INIT_ARGS \
            pkcs11-tool --module "$M2M_FAULT" "$@"
    else
        pkcs11-tool --module "$M2MHSM_MODULE" "$@"
    fi
}

# check / refuse / finish; wait_log, wait_count, wait_until, count_log; free_port
. "$(dirname "${BASH_SOURCE[0]}")/../common/checks.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../common/wait.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../common/ports.sh"
