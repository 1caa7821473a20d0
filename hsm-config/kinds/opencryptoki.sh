# Token kind "opencryptoki": opencryptoki's software token (package opencryptoki) under its
# slot daemon pkcsslotd. Its configuration is global (/etc/opencryptoki/opencryptoki.conf,
# read when pkcsslotd starts) and a software token's data directory is
# /var/lib/opencryptoki/TOKNAME. So that labs stay throwaway and can run side by side,
# kind_prepare adds once a pool of software-token slots (OCK_POOL_FIRST..OCK_POOL_LAST, token
# directories m2mhsm-N) to that file and (re)starts pkcsslotd; each lab token claims a free
# slot (an atomic mkdir under OCK_CLAIMS), its directory m2mhsm-N becomes a link to
# DIR/ock/LABEL, and the token is initialised afresh there. `lab.sh clean DIR` releases the
# claims; a claim whose lab directory is gone is taken over by the next lab. Tokens of
# concurrent labs share labels, so the URIs name the slot too (slot-id).
# Limits: PINs of 4 to 8 characters; the SO PIN of a new token is 87654321 until
# kind_make_token changes it to the lab's; no EC mechanisms (KIND_EC=0: the servers' TLS keys
# go on SoftHSM tokens beside it, through the services' tls_key_pkcs11 section).
# See hsm-config/kinds/softhsm.sh for the interface.

KIND_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so
KIND_PIN_CHARS=8
KIND_EC=0
OCK_CONF=/etc/opencryptoki/opencryptoki.conf
OCK_DATA=/var/lib/opencryptoki
OCK_CLAIMS=$OCK_DATA/m2mhsm-claims
OCK_POOL_FIRST=20
OCK_POOL_LAST=43
OCK_DEFAULT_SO_PIN=87654321 # opencryptoki's documented SO PIN of an uninitialised sw token

ock_pool_conf() {
    local n
    echo "# m2mhsm lab pool begin (hsm-config/kinds/opencryptoki.sh)"
    for ((n = OCK_POOL_FIRST; n <= OCK_POOL_LAST; n++)); do
        printf 'slot %d\n{\nstdll = libpkcs11_sw.so\ntokname = m2mhsm-%d\n}\n' "$n" "$n"
    done
    echo "# m2mhsm lab pool end"
}

ock_slotd_running() { [ -S /var/run/pkcsslotd.socket ] && pgrep -x pkcsslotd > /dev/null; }

kind_prepare() {
    need pkcsslotd pkcsconf pkcs11-tool pgrep
    [ -r "$KIND_MODULE" ] || die "'$KIND_MODULE' missing (apt-get install opencryptoki)"
    [ -w "$OCK_CONF" ] || die "$OCK_CONF is not writable: the opencryptoki kind needs root"
    local changed=0
    if ! grep -q '^# m2mhsm lab pool begin' "$OCK_CONF"; then
        ock_pool_conf >> "$OCK_CONF"
        changed=1
        say "added software-token slots $OCK_POOL_FIRST-$OCK_POOL_LAST to $OCK_CONF"
    fi
    mkdir -p "$OCK_CLAIMS"
    if [ "$changed" = 1 ] && ock_slotd_running; then
        # The daemon reads its slots at start only. Restarting it under running users would
        # break their sessions: say so instead.
        die "pkcsslotd runs without the m2mhsm slots: stop it (and its users) and run again"
    fi
    if ! ock_slotd_running; then
        quiet "starting pkcsslotd" detached pkcsslotd
        local i
        for ((i = 0; i < 50; i++)); do
            ock_slotd_running && break
            sleep 0.1 # a daemon we started: no event to wait on but its socket
        done
        ock_slotd_running || die "pkcsslotd did not start"
    fi
}

# Claim a free pool slot for DIR; prints its number.
ock_claim() {
    local dir=$1 n owner
    for ((n = OCK_POOL_FIRST; n <= OCK_POOL_LAST; n++)); do
        if [ -d "$OCK_CLAIMS/$n" ]; then
            owner=$(cat "$OCK_CLAIMS/$n/lab" 2> /dev/null || true)
            if [[ $owner == slotd:* ]]; then # set aside (ock_quarantine) while that daemon runs
                [ "${owner#slotd:}" != "$(pgrep -xo pkcsslotd || true)" ] || continue
            else
                [ -n "$owner" ] && [ ! -d "$owner" ] || continue
            fi
            # Its lab is gone: one taker wins the rename.
            mv "$OCK_CLAIMS/$n" "$OCK_CLAIMS/.stale.$n.$$" 2> /dev/null || continue
            rm -rf -- "$OCK_CLAIMS/.stale.$n.$$"
        fi
        if mkdir "$OCK_CLAIMS/$n" 2> /dev/null; then
            printf '%s\n' "$dir" > "$OCK_CLAIMS/$n/lab"
            printf '%s\n' "$n"
            return 0
        fi
    done
    die "all opencryptoki pool slots ($OCK_POOL_FIRST-$OCK_POOL_LAST) are claimed; 'lab.sh clean' old labs"
}

# pkcs11-tool on slot N with PINs through the environment: ock_tool N ARGS...
ock_tool() {
    local n=$1
    shift
    pkcs11-tool --module "$KIND_MODULE" --slot "$n" "$@" < /dev/null
}

# Make OCK_DATA/m2mhsm-N a link to DATA. Every process that initialises opencryptoki creates
# the directory of each configured token that is missing, so an unclaimed slot's directory
# may reappear at any moment: move it aside and rename a fresh link over the name, again
# until the rename wins. ock_link N DATA
ock_link() {
    local n=$1 data=$2 target="$OCK_DATA/m2mhsm-$1" i
    for ((i = 0; i < 50; i++)); do
        if [ -d "$target" ] && [ ! -L "$target" ]; then
            mv -T -- "$target" "$target.old.$$" 2> /dev/null && rm -rf -- "$target.old.$$"
        fi
        ln -sfn -- "$data" "$target.new.$$"
        mv -T -- "$target.new.$$" "$target" 2> /dev/null && return 0
        rm -f -- "$target.new.$$"
    done
    die "could not link $target to $data"
}

# A process that dies with sessions open (opencryptoki itself segfaults in some
# re-initialisations: docs/tokens.md) leaves them counted in pkcsslotd's shared memory, and
# C_InitToken on that slot answers CKR_SESSION_EXISTS until the daemon restarts. Such a slot
# is set aside for the daemon's lifetime (its claim names the daemon's pid), not retried.
ock_quarantine() {
    local n=$1
    [ ! -L "$OCK_DATA/m2mhsm-$n" ] || rm -f -- "$OCK_DATA/m2mhsm-$n"
    printf 'slotd:%s\n' "$(pgrep -xo pkcsslotd || true)" > "$OCK_CLAIMS/$n/lab"
    say "slot $n: sessions of a dead process still counted (CKR_SESSION_EXISTS); set aside until pkcsslotd restarts"
}

kind_make_token() {
    local dir=$1 label=$2 so_pin=$3 pin=$4 n data out
    data=$dir/ock/$label
    mkdir -p -- "$data/TOK_OBJ"
    chgrp -R pkcs11 "$dir/ock" && chmod -R g+rwX "$dir/ock" && chmod g+x "$dir"
    export M2M_OCK_SO=$OCK_DEFAULT_SO_PIN M2M_OCK_NEW_SO M2M_OCK_PIN
    M2M_OCK_NEW_SO=$(< "$so_pin") M2M_OCK_PIN=$(< "$pin")
    while :; do
        n=$(ock_claim "$dir") || exit 1 # ock_claim said why
        printf '%s\n' "$n" > "$dir/ock/$label.slot"
        ock_link "$n" "$data"
        rm -f -- "/dev/shm/var.lib.opencryptoki.m2mhsm-$n" # the previous owner's object cache
        if out=$(ock_tool "$n" --init-token --label "$label" --so-pin env:M2M_OCK_SO 2>&1); then
            break
        fi
        [[ $out == *CKR_SESSION_EXISTS* ]] || die "initialising token '$label' (slot $n): $out"
        ock_quarantine "$n"
    done
    quiet "setting the user PIN of '$label'" \
        ock_tool "$n" --login --login-type so --so-pin env:M2M_OCK_SO --init-pin --new-pin env:M2M_OCK_PIN
    quiet "setting the SO PIN of '$label'" \
        ock_tool "$n" --login --login-type so --so-pin env:M2M_OCK_SO --change-pin --new-pin env:M2M_OCK_NEW_SO
    unset M2M_OCK_SO M2M_OCK_NEW_SO M2M_OCK_PIN
}

kind_token_uri() { printf 'pkcs11:token=%s;slot-id=%s\n' "$2" "$(< "$1/ock/$2.slot")"; }
kind_init_args() { :; }
kind_keypair() { die "opencryptoki has no EC mechanisms: no TLS key on '$2'"; }
kind_env() { :; }
kind_start() { :; }
kind_stop() { :; }

kind_clean() {
    local dir=$1 c n
    for c in "$OCK_CLAIMS"/*/lab; do
        [ -f "$c" ] && [ "$(< "$c")" = "$dir" ] || continue
        n=$(basename "$(dirname "$c")")
        [ ! -L "$OCK_DATA/m2mhsm-$n" ] || rm -f -- "$OCK_DATA/m2mhsm-$n"
        rm -f -- "/dev/shm/var.lib.opencryptoki.m2mhsm-$n"
        rm -rf -- "$OCK_CLAIMS/$n"
    done
}
