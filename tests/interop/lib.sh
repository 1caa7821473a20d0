# Shared helpers for the interop scripts: a throwaway SoftHSM directory and assertions.
# Usage: . lib.sh; lab_init NAME  (sets LAB, SOFTHSM2_CONF, USER_PIN_FILE, SO_PIN_FILE)
set -euo pipefail

: "${M2MHSM:?M2MHSM must name the m2mhsm binary}"
: "${M2MHSM_MODULE:=/usr/lib/softhsm/libsofthsm2.so}"
export M2MHSM_MODULE

lab_init() {
    LAB=$(mktemp -d "${TMPDIR:-/tmp}/m2mhsm-$1.XXXXXX")
    [ -n "${KEEP_LAB:-}" ] || trap 'rm -rf "$LAB"' EXIT
    bash "$(dirname "${BASH_SOURCE[0]}")/../../hsm-config/softhsm-conf.sh" "$LAB"
    export SOFTHSM2_CONF="$LAB/softhsm2.conf"
    USER_PIN_FILE="$LAB/user.pin"
    SO_PIN_FILE="$LAB/so.pin"
    (umask 077; openssl rand -hex 12 > "$USER_PIN_FILE"; openssl rand -hex 12 > "$SO_PIN_FILE")
}

# check / refuse / finish; wait_log, wait_count, wait_until, count_log; free_port
. "$(dirname "${BASH_SOURCE[0]}")/../common/checks.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../common/wait.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../common/ports.sh"
