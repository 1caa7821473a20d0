# shellcheck shell=bash
# Token kind "softhsm-remote" for hsm-config/lab.sh: the lab's SoftHSM tokens, each served by
# its own `p11-kit server` on a unix socket, and every program reaching its token through
# p11-kit's client module: every PKCS#11 call is an RPC to another process, as with a
# network HSM. One server per token, so that `lab.sh restart-token DIR ROLE` can take one
# token away and bring it back on the same address (an HSM failover) without touching the
# others. Sourced by lab.sh; defines the kind_* functions it calls (docs/tokens.md).

P11_CLIENT_MODULE=${M2M_P11_CLIENT_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so}
P11_PROVIDER=/usr/lib/softhsm/libsofthsm2.so
# The module the services, the device and the CLI load (lab.sh writes it into the configs);
# lab.sh's own set-up steps (token-init, key pairs, the Kpm) use SoftHSM directly.
# shellcheck disable=SC2034 # this file's variables are read by lab.sh, which sources it
SERVICE_MODULE=$P11_CLIENT_MODULE
P11_START_TIMEOUT=10 # seconds for a server's socket to appear, or to go after SIGTERM

# The kind interface (hsm-config/kinds/softhsm.sh): the lab's own set-up steps use SoftHSM
# directly, the programs the client module; the tokens' URIs, key pairs and init args are
# softhsm's.
# shellcheck disable=SC2034
KIND_MODULE=$P11_PROVIDER
# shellcheck disable=SC2034
KIND_PIN_CHARS=24
# shellcheck disable=SC2034
KIND_EC=1

P11_ALL=ALL # the server of every token at once (labels are lower case: no token is "ALL")
p11_sock() { printf '%s/p11/%s.sock\n' "$1" "$2"; }
p11_pidfile() { printf '%s/p11/%s.pid\n' "$1" "$2"; }

kind_prepare() {
    command -v p11-kit > /dev/null || die "'p11-kit' is not installed (apt-get install p11-kit)"
    [ -r "$P11_CLIENT_MODULE" ] ||
        die "p11-kit client module '$P11_CLIENT_MODULE' not found (apt-get install p11-kit-modules)"
    [ -r "$P11_PROVIDER" ] || die "'$P11_PROVIDER' not found (apt-get install softhsm2)"
    mkdir -p -- "$1/p11"
}

# The token itself is an ordinary SoftHSM token; only the way to it is remote.
kind_make_token() {
    local dir=$1 label=$2 so_pin_file=$3 pin_file=$4
    "$BIN/m2mhsm" --module "$P11_PROVIDER" --lock-file "$dir/$label.lock" \
        --pin-source "file:$pin_file" \
        token-init --label "$label" --so-pin-source "file:$so_pin_file"
}

# P11_KIT_SERVER_ADDRESS is one per process: each role's address, for the program of that role.
kind_env() {
    local dir=$1 t up
    env_line M2M_TOKEN_KIND softhsm-remote
    env_line M2M_MODULE "$P11_CLIENT_MODULE"
    env_line M2M_DIRECT_MODULE "$P11_PROVIDER"
    for t in "${TOKENS[@]}"; do
        up=${t^^} && up=${up//-/_}
        env_line "M2M_${up}_P11_ADDRESS" "unix:path=$(p11_sock "$dir" "$t")"
    done
    # One address for a process that uses several tokens (a test making two stores).
    env_line M2M_P11_ADDRESS "unix:path=$(p11_sock "$dir" "$P11_ALL")"
}

# Is the server of token T (its process group) running? p11_running DIR T
p11_running() {
    local f pid
    f=$(p11_pidfile "$1" "$2")
    [ -s "$f" ] || return 1
    pid=$(< "$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    # shellcheck disable=SC2009 # zombies do not count
    ps -o stat= -g "$pid" 2> /dev/null | grep -qv '^Z'
}

# Start the server of one token in its own process group (it forks one p11-kit-remote per
# client connection; stopping the group takes those too, as an HSM going away would).
p11_start_one() {
    local dir=$1 t=$2 sock pidfile i uris=("pkcs11:token=$2") u
    if [ "$t" = "$P11_ALL" ]; then
        uris=()
        for u in "${TOKENS[@]}"; do uris+=("pkcs11:token=$u"); done
    fi
    sock=$(p11_sock "$dir" "$t")
    pidfile=$(p11_pidfile "$dir" "$t")
    if p11_running "$dir" "$t"; then return 0; fi
    rm -f -- "$sock"
    printf '=== %s: p11-kit server for %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$t" >> "$dir/p11/$t.log"
    # shellcheck disable=SC2016
    SOFTHSM2_CONF="$dir/softhsm2.conf" setsid bash -c \
        'echo "$$" > "$1.tmp" && mv -f "$1.tmp" "$1" && exec "${@:2}"' lab-p11 "$pidfile" \
        p11-kit server --provider "$P11_PROVIDER" -f -n "$sock" "${uris[@]}" \
        {LAB_STDERR}>&- < /dev/null >> "$dir/p11/$t.log" 2>&1 &
    for ((i = 0; i < P11_START_TIMEOUT * 20; i++)); do
        [ -S "$sock" ] && [ -s "$pidfile" ] && return 0
        sleep 0.05
    done
    cat "$dir/p11/$t.log" >&2
    die "p11-kit server for token '$t' did not create $sock in ${P11_START_TIMEOUT}s"
}

# Stop the server of one token and every connection it serves: p11_stop_one DIR T SIGNAL.
# TERM for lab.sh clean; KILL for a failover, which must not wait for the server's consent
# (p11-kit-remote was seen to outlive SIGTERM by seconds while its client kept calling).
p11_stop_one() {
    local dir=$1 t=$2 sig=$3 pid i pidfile
    pidfile=$(p11_pidfile "$dir" "$t")
    if ! p11_running "$dir" "$t"; then
        rm -f -- "$pidfile"
        return 0
    fi
    pid=$(< "$pidfile")
    kill "-$sig" -- "-$pid" 2> /dev/null || true
    for ((i = 0; i < P11_START_TIMEOUT * 20; i++)); do
        p11_running "$dir" "$t" || break
        sleep 0.05
    done
    if p11_running "$dir" "$t"; then kill -KILL -- "-$pid" 2> /dev/null || true; fi
    for ((i = 0; i < 40; i++)); do
        p11_running "$dir" "$t" || break
        sleep 0.05
    done
    rm -f -- "$pidfile" "$(p11_sock "$dir" "$t")"
}

kind_start() {
    local t
    for t in "${TOKENS[@]}" "$P11_ALL"; do p11_start_one "$1" "$t"; done
    say "p11-kit servers: $(for t in "${TOKENS[@]}"; do printf '%s=%s ' "$t" "$(p11_sock "$1" "$t")"; done)"
}

kind_stop() {
    local t
    for t in "${TOKENS[@]}" "$P11_ALL"; do p11_stop_one "$1" "$t" TERM; done
}

# The servers run from init to clean (lab.sh stop leaves them: the HSM outlives its services).
kind_clean() { kind_stop "$1"; }

# An HSM failover: the token's server and every connection it serves go, then a new server
# answers on the same address.
kind_restart_token() {
    local dir=$1 t=$2
    p11_stop_one "$dir" "$t" KILL
    say "token '$t': p11-kit server killed"
    p11_start_one "$dir" "$t"
    say "token '$t': p11-kit server started again on $(p11_sock "$dir" "$t")"
}

# A longer outage, for tests: the token's server stays away until kind_start_token.
kind_stop_token() {
    p11_stop_one "$1" "$2" KILL
    say "token '$2': p11-kit server killed"
}
kind_start_token() {
    p11_start_one "$1" "$2"
    say "token '$2': p11-kit server started on $(p11_sock "$1" "$2")"
}
