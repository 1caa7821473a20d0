# Shared by the end-to-end suites: a lab from hsm-config/lab.sh with m2m-mef and m2m-maf
# running, the device m2m-enrolee, assertions, and helpers for peers we did not write.
# Usage: . lib.sh; e2e_lab NAME [--expiry SECONDS]; ...; finish
set -euo pipefail

: "${M2M_BUILD:?M2M_BUILD must name the build directory}"
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LABSH="$SRC/hsm-config/lab.sh"

E2E_EXTRA_PIDS=()

e2e_cleanup() {
    local pid
    for pid in "${E2E_EXTRA_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -n "${LAB:-}" ] && [ -d "$LAB" ] && bash "$LABSH" stop "$LAB" > /dev/null 2>&1 || true
    # A sanitizer report in a server log is a failure even if every check passed.
    if [ -n "${LAB:-}" ] && grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:" \
        "$LAB"/*.log 2> /dev/null; then
        echo "not ok - sanitizer report in a server log"; grep -h -A30 -E "Sanitizer|runtime error" "$LAB"/*.log | head -60
        exit 1
    fi
    [ -n "${KEEP_LAB:-}" ] || rm -rf "${LAB:-/nonexistent}"
}

# e2e_lab NAME [lab.sh init options]: make and start a lab; sources its lab.env.
e2e_lab() {
    e2e_lab_init "$@"
    bash "$LABSH" start "$LAB" > /dev/null
}

# e2e_lab_init NAME [lab.sh init options]: make a lab without starting it (to edit configs).
e2e_lab_init() {
    local name=$1; shift
    LAB=$(mktemp -d "${TMPDIR:-/tmp}/m2m-e2e-$name.XXXXXX")
    rmdir "$LAB"
    trap e2e_cleanup EXIT
    bash "$LABSH" init "$LAB" --build "$M2M_BUILD" "$@" > "$LAB.init.log" 2>&1 ||
        { cat "$LAB.init.log"; rm -f "$LAB.init.log"; exit 1; }
    rm -f "$LAB.init.log"
    # shellcheck disable=SC1091
    . "$LAB/lab.env"
}

# set_json FILE SECTION KEY JSON-VALUE: change one configuration field (SECTION "-": a
# top-level one, such as the MAF's "mefs").
set_json() {
    python3 - "$@" <<'PY'
import json, sys
path, section, key, value = sys.argv[1:5]
c = json.load(open(path))
(c if section == "-" else c[section])[key] = json.loads(value)
json.dump(c, open(path, "w"), indent=2)
PY
}

# check / refuse / finish
. "$SRC/tests/common/checks.sh"

# wait_log FILE REGEX [SECONDS]: until a line of FILE matches (servers log asynchronously).
wait_log() {
    local file=$1 re=$2 t=${3:-10} i
    for ((i = 0; i < t * 20; i++)); do
        grep -q -E -- "$re" "$file" 2> /dev/null && return 0
        sleep 0.05
    done
    echo "# no line matching /$re/ in $file:" >&2; tail -5 "$file" >&2
    return 1
}

# wait_until SECONDS COMMAND...: until the command succeeds (re-evaluated by eval each time).
wait_until() {
    local t=$1 i; shift
    for ((i = 0; i < t * 4; i++)); do
        eval "$@" && return 0
        sleep 0.25
    done
    return 1
}

# count_log FILE REGEX: how many lines match.
count_log() { grep -c -E -- "$2" "$1" 2> /dev/null || true; }

# running PID: a live process, not a zombie waiting for init to reap it.
running() { ps -o stat= -p "$1" 2> /dev/null | grep -qv '^Z'; }
alive() { running "$(cat "$LAB/$1.pid")"; }

# m2mhsm_on mef|maf|enrolee ARGS...: the admin CLI on one of the lab's tokens.
m2mhsm_on() {
    local t=$1; shift
    local up=${t^^}
    local token="M2M_${up}_TOKEN" pin="M2M_${up}_PIN_FILE" lock="M2M_${up}_LOCK_FILE"
    "$M2M_BIN/m2mhsm" --module "$M2M_MODULE" --token "${!token}" --pin-source "file:${!pin}" \
        --lock-file "${!lock}" "$@"
}

# kinds_on TOKEN: the kinds of the records on a token, sorted, one line ("enrolment ke kpm").
kinds_on() {
    m2mhsm_on "$1" list --json | python3 -c 'import json,sys; print(" ".join(sorted(r["kind"] for r in json.load(sys.stdin))))'
}

enrolee() { "$M2M_BIN/m2m-enrolee" --config "$M2M_ENROLEE_CONFIG" "$@"; }

# The KeID the device holds now (its newest Km).
device_ke_id() {
    m2mhsm_on enrolee list --json | python3 -c 'import json,sys
r=[x for x in json.load(sys.stdin) if x["kind"]=="km"]
print(r[-1]["identity"] if r else "")'
}

# mint_cert NAME: a client certificate for NAME with a file key, signed by the lab CA (test
# clients only: the services' keys live in their tokens). Sets CERT and KEY.
mint_cert() {
    local n=$1
    KEY="$LAB/test-$n.key" CERT="$LAB/test-$n.crt"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KEY" 2> /dev/null
    openssl req -new -key "$KEY" -subj "/CN=$n" -out "$LAB/test-$n.csr" 2> /dev/null
    printf 'subjectAltName=DNS:%s\nextendedKeyUsage=clientAuth,serverAuth\n' "$n" > "$LAB/test-$n.ext"
    openssl x509 -req -in "$LAB/test-$n.csr" -CA "$M2M_CA_CERT" -CAkey "$LAB/ca.key" \
        -CAcreateserial -days 1 -extfile "$LAB/test-$n.ext" -out "$CERT" 2> /dev/null
}

# fetch_as CERTNAME ORIGIN PATH [curl args]: GET PATH at the MEF's HTTPS service with a client
# certificate for CERTNAME; prints "HTTP-STATUS BODY".
fetch_as() {
    local n=$1 origin=$2 path=$3; shift 3
    mint_cert "$n"
    curl -sS --max-time 10 --cacert "$M2M_CA_CERT" --cert "$CERT" --key "$KEY" \
        --resolve "$M2M_MEF_FQDN:$M2M_MEF_HTTPS_PORT:127.0.0.1" -H "X-M2M-Origin: $origin" \
        -w ' %{http_code}' "$@" "https://$M2M_MEF_FQDN:$M2M_MEF_HTTPS_PORT$path" 2>&1 |
        awk '{code=$NF; $NF=""; sub(/ $/, ""); print code " " $0}'
}

# Km = HMAC-SHA-256(Ke, label || MAF-ID) (clause 10.3.2) with openssl mac, Ke in hex.
km_of() {
    local ke_hex=$1 maf_id=$2
    printf 'oneM2M Enrolment Key to Master Credential derivation%s' "$maf_id" |
        openssl mac -digest SHA256 -macopt "hexkey:$ke_hex" HMAC | tr 'A-F' 'a-f'
}

# wait_count FILE REGEX N [SECONDS]: until at least N lines of FILE match.
wait_count() {
    local file=$1 re=$2 n=$3 t=${4:-10} i c
    for ((i = 0; i < t * 20; i++)); do
        c=$(count_log "$file" "$re")
        [ "${c:-0}" -ge "$n" ] && return 0
        sleep 0.05
    done
    echo "# fewer than $n lines matching /$re/ in $file:" >&2; tail -5 "$file" >&2
    return 1
}

# wait_gone PID [SECONDS]: until PID has exited (a zombie counts as gone).
wait_gone() {
    local pid=$1 t=${2:-10} i
    for ((i = 0; i < t * 20; i++)); do
        running "$pid" || return 0
        sleep 0.05
    done
    echo "# process $pid still running after ${t}s" >&2
    return 1
}

# free_port: a loopback TCP port that nothing listens on now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
