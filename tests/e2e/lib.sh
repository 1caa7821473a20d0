# Shared by the end-to-end suites: a lab from hsm-config/lab.sh with m2m-mef, m2m-maf and
# m2m-eb running, the device m2m-enrolee, assertions, and helpers for peers we did not write.
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
    # clean: also releases what the token kind holds outside the lab (opencryptoki's slots,
    # softhsm-remote's token servers: with KEEP_LAB=1 they stay until `lab.sh clean LAB`)
    if [ -z "${KEEP_LAB:-}" ] && [ -n "${LAB:-}" ]; then
        bash "$LABSH" clean "$LAB" > /dev/null 2>&1 || rm -rf "$LAB"
    fi
}

# e2e_lab NAME [lab.sh init options]: make and start a lab; sources its lab.env.
e2e_lab() {
    e2e_lab_init "$@"
    # Through a pipe, as scripts/demo.sh runs it: a process that lab.sh start leaves running
    # (a service, a token server) must not hold its output open, or the caller's pipe never
    # ends. The bound is for a broken run only: the pipe ends when lab.sh exits.
    local st
    set +e
    bash "$LABSH" start "$LAB" 2>&1 | timeout 60 cat > "$LAB/start.out"
    st=("${PIPESTATUS[@]}")
    set -e
    if [ "${st[1]}" = 124 ]; then
        echo "not ok - lab.sh start returned, but a process it left running holds its output open"
        exit 1
    fi
    [ "${st[0]}" = 0 ] || { cat "$LAB/start.out"; exit 1; }
}

# e2e_lab_init NAME [lab.sh init options]: make a lab without starting it (to edit configs).
e2e_lab_init() {
    local name=$1; shift
    LAB=$(mktemp -d "${TMPDIR:-/tmp}/m2m-e2e-$name.XXXXXX")
    rmdir "$LAB"
    trap e2e_cleanup EXIT
    # M2MHSM_TOKEN_KIND: the token kind of the suite's run (ctest NAME@KIND, docs/tokens.md)
    bash "$LABSH" init "$LAB" --build "$M2M_BUILD" --token-kind "${M2MHSM_TOKEN_KIND:-softhsm}" \
        "$@" > "$LAB.init.log" 2>&1 ||
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

# check / refuse / finish; wait_log, wait_count, wait_until, count_log; free_port
. "$SRC/tests/common/checks.sh"
. "$SRC/tests/common/wait.sh"
. "$SRC/tests/common/ports.sh"

# set_enrolment_expiry MEF-CONFIG VALUE: every configured Enrolee's Enrolment Expiry.
set_enrolment_expiry() {
    python3 - "$1" "$2" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for e in c["enrolees"]:
    e["enrolment_expiry"] = sys.argv[2]
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
}

# last_expiry mef|maf|enrolee KIND: the latest "expires" m2m:timestamp of KIND's records.
last_expiry() {
    m2mhsm_on "$1" list --json |
        python3 -c 'import json,sys; print(max(r["expires"] for r in json.load(sys.stdin) if r["kind"]==sys.argv[1]))' "$2"
}

# wait_past TIMESTAMP [SECONDS]: until the wall clock is past an m2m:timestamp (UTC), such
# as a key's expiry instant; from then on the key is expired however loaded the machine is.
wait_past() {
    local ts=$1 t
    t=$(date -u -d "${ts:0:8} ${ts:9:2}:${ts:11:2}:${ts:13:2}" +%s) || return 1
    wait_until "${2:-120}" "test \$(date +%s) -gt $t"
}

# sweep_now mef|maf|eb: SIGUSR1 to the server, then wait for its "swept" line.
sweep_now() {
    local log="$LAB/$1.log" n
    n=$(count_log "$log" "event=swept ")
    kill -USR1 "$(cat "$LAB/$1.pid")" || return 1
    wait_count "$log" "event=swept " $((n + 1)) 30
}

# reload_now mef|maf|eb: SIGHUP to the server, then wait for its "reloaded" or "reload-failed"
# line; last_reload mef|maf prints the newest of those lines.
reload_now() {
    local log="$LAB/$1.log" n
    n=$(count_log "$log" "event=reload(ed|-failed) ")
    kill -HUP "$(cat "$LAB/$1.pid")" || return 1
    wait_count "$log" "event=reload(ed|-failed) " $((n + 1)) 30
}
last_reload() { grep -E "event=reload(ed|-failed) " "$LAB/$1.log" | tail -1; }

# running PID: a live process, not a zombie waiting for init to reap it.
running() { ps -o stat= -p "$1" 2> /dev/null | grep -qv '^Z'; }
alive() { running "$(cat "$LAB/$1.pid")"; }

# token_env mef|maf|enrolee|eb [--init-args]: TOKEN_ENV becomes the NAME=VALUE words (for env)
# a program needs in its environment to reach that role's token on the lab's kind: the address
# of the token's own p11-kit server (softhsm-remote: P11_KIT_SERVER_ADDRESS is one per process,
# so every program that touches a token runs through here or lab.sh's launch). With
# --init-args also the module's init args (softokn), for programs without a configuration
# (m2mhsm, the test tools); a configuration carries its own, and the variable would reach
# its tls_key_pkcs11 module too.
token_env() {
    local up=${1^^}
    local init_args="M2M_${up}_INIT_ARGS" addr="M2M_${up}_P11_ADDRESS"
    TOKEN_ENV=("P11_KIT_SERVER_ADDRESS=${!addr:-}")
    if [ "${2:-}" = --init-args ]; then
        TOKEN_ENV+=("M2MHSM_MODULE_INIT_ARGS=${!init_args:-}")
    fi
}

# on_token mef|maf|enrolee|eb [--init-args] PROGRAM ARGS...: PROGRAM with that environment.
# In the background ($! the program's pid): `token_env ROLE; env "${TOKEN_ENV[@]}" PROGRAM &`.
on_token() {
    local TOKEN_ENV
    if [ "${2:-}" = --init-args ]; then
        token_env "$1" --init-args
        shift 2
    else
        token_env "$1"
        shift
    fi
    env "${TOKEN_ENV[@]}" "$@"
}

# m2mhsm_on mef|maf|enrolee|eb ARGS...: the admin CLI on one of the lab's tokens.
m2mhsm_on() {
    local t=$1; shift
    local up=${t^^}
    local token="M2M_${up}_TOKEN" pin="M2M_${up}_PIN_FILE" lock="M2M_${up}_LOCK_FILE"
    on_token "$t" --init-args "$M2M_BIN/m2mhsm" --module "$M2M_MODULE" --token "${!token}" \
        --pin-source "file:${!pin}" --lock-file "${!lock}" "$@"
}

# kinds_on TOKEN: the kinds of the records on a token, sorted, one line ("enrolment ke kpm"),
# but for the second device's (M2M_KPM_B_ID, the Enrolee B's device: tests/e2e/enrolee_b.sh
# follows those), which the suites about the first device leave alone.
kinds_on() {
    m2mhsm_on "$1" list --json | python3 -c 'import json,sys
b = sys.argv[1]
print(" ".join(sorted(r["kind"] for r in json.load(sys.stdin)
                      if b == "" or (r["identity"] != b and r["kpmId"] != b))))' "${M2M_KPM_B_ID:-}"
}

# session OUT [--send LINE] -- CLIENT...: a TLS client that reads its stdin (openssl s_client
# -quiet -no_ign_eof, gnutls-cli), its stdin held open until the server's greeting
# ("authenticated … until") is in OUT or the client has exited; with --send, LINE is sent
# next and stdin held until it comes back. Then stdin closes and the client finishes.
session() {
    local out=$1 send="" fd pid
    shift
    if [ "$1" = --send ]; then send=$2 && shift 2; fi
    [ "$1" != -- ] || shift
    : > "$out"
    rm -f "$out.in" && mkfifo "$out.in"
    timeout 60 "$@" < "$out.in" > "$out" 2>&1 &
    pid=$!
    exec {fd}> "$out.in"
    until_line_or_exit "$out" "authenticated .* until" "$pid" || true
    if [ -n "$send" ] && running "$pid"; then
        printf '%s\n' "$send" >&"$fd"
        until_line_or_exit "$out" "^$send\$" "$pid" || true
    fi
    exec {fd}>&-
    wait "$pid" 2> /dev/null || true
    rm -f "$out.in"
}

# until_line_or_exit FILE REGEX PID: until a line of FILE matches or PID has exited (polling
# every 0.05 s, as the helpers in tests/common/wait.sh do).
until_line_or_exit() {
    local i
    for ((i = 0; i < 1200; i++)); do
        grep -q -E -- "$2" "$1" && return 0
        running "$3" || break
        sleep 0.05
    done
    grep -q -E -- "$2" "$1"
}

# The device, on the enrolee token (its lab configuration; other configurations: on_token).
enrolee() { on_token enrolee "$M2M_BIN/m2m-enrolee" --config "$M2M_ENROLEE_CONFIG" "$@"; }

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

