# Shared helpers for the interop scripts: a throwaway SoftHSM directory and assertions.
# Usage: . lib.sh; lab_init NAME  (sets LAB, SOFTHSM2_CONF, USER_PIN_FILE, SO_PIN_FILE)
set -euo pipefail

: "${M2MHSM:?M2MHSM must name the m2mhsm binary}"
: "${M2MHSM_MODULE:=/usr/lib/softhsm/libsofthsm2.so}"
export M2MHSM_MODULE

failures=0
checks=0

lab_init() {
    LAB=$(mktemp -d "${TMPDIR:-/tmp}/m2mhsm-$1.XXXXXX")
    [ -n "${KEEP_LAB:-}" ] || trap 'rm -rf "$LAB"' EXIT
    mkdir -p "$LAB/tokens"
    printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$LAB" > "$LAB/softhsm2.conf"
    export SOFTHSM2_CONF="$LAB/softhsm2.conf"
    USER_PIN_FILE="$LAB/user.pin"
    SO_PIN_FILE="$LAB/so.pin"
    (umask 077; openssl rand -hex 12 > "$USER_PIN_FILE"; openssl rand -hex 12 > "$SO_PIN_FILE")
}

# check DESCRIPTION COMMAND...: the command must succeed.
check() {
    local what=$1; shift
    checks=$((checks + 1))
    if "$@"; then echo "ok - $what"; else echo "not ok - $what"; failures=$((failures + 1)); fi
}

# refuse DESCRIPTION COMMAND...: the command must fail.
refuse() {
    local what=$1; shift
    checks=$((checks + 1))
    if "$@" >/dev/null 2>&1; then echo "not ok - $what"; failures=$((failures + 1)); else echo "ok - $what"; fi
}

finish() {
    echo "$((checks - failures)) passed, $failures failed"
    [ "$failures" -eq 0 ]
}
