#!/usr/bin/env bash
# systemd integration, without running systemd: m2m-mef, m2m-maf and m2m-eb, started by hand from a
# lab's configuration with NOTIFY_SOCKET pointing at a stand-in notification socket
# (notify_socket.py), send READY=1 naming their listeners once those listen, and STOPPING=1
# when SIGTERM begins the drain, then exit 0; an unreachable socket does not stop a server.
# They run with the units' LimitNOFILE without clamping max_connections. The unit files pass
# `systemd-analyze verify` without a warning, and the sysusers.d file makes the user.
# A build without libsystemd (M2M_SD_NOTIFY=OFF) must send nothing instead.
. "$(dirname "$0")/lib.sh"
: "${M2M_SD_NOTIFY:?M2M_SD_NOTIFY must say whether the build has sd_notify (ON or OFF)}"
for c in python3 systemd-analyze systemd-sysusers ss prlimit; do
    command -v "$c" > /dev/null || { echo "not ok - '$c' is missing (scripts/deps.sh)"; exit 1; }
done
e2e_lab_init systemd
UNITS="$SRC/hsm-config/systemd"

# notify_listen NAME: a notification socket $LAB/NAME.sock; its datagrams, one line each with
# the sender's pid, go to $LAB/NAME.notify.
notify_listen() {
    python3 "$SRC/tests/e2e/notify_socket.py" "$LAB/$1.sock" "$LAB/$1.notify" &
    E2E_EXTRA_PIDS+=($!)
    wait_log "$LAB/$1.notify" "^bound "
}

# notify_mark NAME: send "MARK" to NAME's socket and wait for it: every datagram sent before
# has been written by then (a Unix datagram socket keeps the order).
notify_mark() {
    python3 -c 'import socket, sys
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"MARK", sys.argv[1])' "$LAB/$1.sock"
    wait_log "$LAB/$1.notify" " MARK$"
}

# unit_nofile mef|maf: the LimitNOFILE of the server's unit.
unit_nofile() { sed -n 's/^LimitNOFILE=//p' "$UNITS/m2m-$1.service"; }

# serve mef|maf SOCKET: the server as its unit would run it: NOTIFY_SOCKET, the unit's
# LimitNOFILE, the lab's configuration; log and pid file in the lab (so cleanup stops it).
serve() {
    local s=$1 cfg="M2M_${1^^}_CONFIG" n
    n=$(unit_nofile "$s")
    token_env "$s"
    env "${TOKEN_ENV[@]}" NOTIFY_SOCKET="$2" prlimit --nofile="$n:$n" "$M2M_BIN/m2m-$s" \
        --config "${!cfg}" >> "$LAB/$s.log" 2>&1 &
    SERVER_PID=$!
    echo "$SERVER_PID" > "$LAB/$s.pid"
}

# listens PID PROTO PORT: PID has a listening socket (tcp) or a bound one (udp) on PORT.
listens() {
    local opt=-Hltnp
    [ "$2" = udp ] && opt=-Hlunp
    ss "$opt" "sport = :$3" | grep -q "pid=$1,"
}

# stop_server mef|maf: SIGTERM; then the exit status must be 0.
stop_server() {
    kill -TERM "$SERVER_PID"
    [ "$M2M_SD_NOTIFY" = OFF ] || wait_log "$LAB/$1.notify" "STOPPING=1"
    local rc=0
    wait "$SERVER_PID" || rc=$?
    rm -f "$LAB/$1.pid"
    check "m2m-$1 exits 0 after SIGTERM (status $rc)" test "$rc" = 0
}

# --------------------------------------------------------------------- READY=1, STOPPING=1

# readiness mef|maf LISTENER...: one server's notifications; a LISTENER is PROTO:PORT:NAME,
# NAME as the STATUS= names it.
readiness() {
    local s=$1 l proto port name
    shift
    notify_listen "$s"
    serve "$s" "$LAB/$s.sock"
    local pid=$SERVER_PID
    if [ "$M2M_SD_NOTIFY" = OFF ]; then
        wait_log "$LAB/$s.log" "event=ready "
        stop_server "$s"
        notify_mark "$s"
        check "$s: a build without libsystemd sends nothing" \
            test "$(grep -c -v -E '^bound | MARK$' "$LAB/$s.notify")" = 0
        return
    fi
    if ! wait_log "$LAB/$s.notify" "READY=1"; then
        check "$s: READY=1 arrives" false
        { kill -TERM "$pid"; wait "$pid"; } || true
        return 0
    fi
    # At this moment, before anything else happens: the server must already listen.
    for l in "$@"; do
        IFS=: read -r proto port name <<< "$l"
        check "$s: listening on $proto port $port when READY=1 arrives" listens "$pid" "$proto" "$port"
    done
    check "$s: its log said ready before READY=1" grep -q "event=ready " "$LAB/$s.log"
    local ready
    ready=$(grep "READY=1" "$LAB/$s.notify")
    echo "# $ready"
    check "$s: READY=1 comes from the server's pid" test "${ready%% *}" = "pid=$pid"
    for l in "$@"; do
        IFS=: read -r proto port name <<< "$l"
        check "$s: STATUS= names $name 127.0.0.1:$port" grep -q -F "$name 127.0.0.1:$port" <<< "$ready"
    done
    check "$s: no STOPPING=1 before SIGTERM" refuse_stopping "$s"
    stop_server "$s"
    notify_mark "$s"
    local stopping
    stopping=$(grep "STOPPING=1" "$LAB/$s.notify")
    echo "# $stopping"
    check "$s: STOPPING=1 from the server's pid, naming the signal" \
        grep -q -E "^pid=$pid STOPPING=1\|STATUS=stopping on Terminated, draining 0 connections$" \
        <<< "$stopping"
    check "$s: READY=1 then STOPPING=1, once each, nothing else" \
        test "$(grep -v -E '^bound | MARK$' "$LAB/$s.notify" | cut -d' ' -f2 | cut -d'|' -f1 |
            tr '\n' ' ')" = "READY=1 STOPPING=1 "
    check "$s: the drain was logged" grep -q "event=stopped " "$LAB/$s.log"
    check "$s: max_connections not clamped at the unit's LimitNOFILE=$(unit_nofile "$s")" \
        refuse_clamped "$s"
}
refuse_stopping() { ! grep -q "STOPPING=1" "$LAB/$1.notify"; }
refuse_clamped() { ! grep -q "event=max-connections-clamped" "$LAB/$1.log"; }

readiness maf "tcp:$M2M_MAF_PORT:enrolees tls1.2"
readiness eb "tcp:$M2M_EB_PORT:enrolees tls1.2"
readiness mef "tcp:$M2M_MEF_PORT:bootstrap tls1.2" "udp:$M2M_MEF_DTLS_PORT:bootstrap dtls1.2" \
    "tcp:$M2M_MEF_HTTPS_PORT:fetchCredentials https"

# A socket nobody listens on: the server serves anyway and says why systemd will not hear it.
readies=$(count_log "$LAB/maf.log" "event=ready ")
serve maf "$LAB/nobody.sock"
wait_count "$LAB/maf.log" "event=ready " $((readies + 1)) || true
check "maf: ready and listening with an unreachable NOTIFY_SOCKET" listens "$SERVER_PID" tcp "$M2M_MAF_PORT"
if [ "$M2M_SD_NOTIFY" = ON ]; then
    check "maf: the failed notification is logged" \
        grep -q -E "event=notify-failed socket=$LAB/nobody.sock error=.*No such file" "$LAB/maf.log"
fi
stop_server maf

# ------------------------------------------------------------------ unit files, the user

# Copies of the units that run the build's programs: verify wants ExecStart to exist.
mkdir "$LAB/units"
for s in mef maf eb; do
    sed "s|^ExecStart=/usr/bin/m2m-$s |ExecStart=$M2M_BIN/m2m-$s |" "$UNITS/m2m-$s.service" \
        > "$LAB/units/m2m-$s.service"
    check "m2m-$s.service: the copy differs from the unit in ExecStart only" \
        test "$(diff "$UNITS/m2m-$s.service" "$LAB/units/m2m-$s.service" | grep -c '^[<>]')" = 2
done
verify=$(cd "$LAB/units" && systemd-analyze verify ./m2m-mef.service ./m2m-maf.service \
    ./m2m-eb.service 2>&1) &&
    rc=0 || rc=$?
printf '# systemd-analyze verify: exit %s, output: "%s"\n' "$rc" "$verify"
check "systemd-analyze verify accepts the three units" test "$rc" = 0
check "systemd-analyze verify has no warning for them" test -z "$verify"
# The check above can fail: a misspelt setting is a warning (and exit 0).
sed 's/^ProtectSystem=/ProtectSytem=/' "$LAB/units/m2m-maf.service" > "$LAB/units/typo.service"
check "systemd-analyze verify warns about a misspelt setting" \
    grep -q "Unknown key 'ProtectSytem'" <<< "$(cd "$LAB/units" && systemd-analyze verify ./typo.service 2>&1)"
for s in mef maf eb; do
    check "m2m-$s.service: Type=notify as user m2mhsm" \
        grep -q -z -P "(?s)\nType=notify\n.*\nUser=m2mhsm\n" "$UNITS/m2m-$s.service"
    systemd-analyze security --offline=yes "$LAB/units/m2m-$s.service" 2>&1 |
        grep "Overall exposure" | sed 's/^/# /'
done

# systemd-sysusers in a scratch root: the user, without a login shell, in group softhsm.
mkdir -p "$LAB/root/etc"
systemd-sysusers --root="$LAB/root" - < "$UNITS/m2mhsm.sysusers.conf" > /dev/null 2>&1
check "sysusers: user m2mhsm without a login shell, home /var/lib/m2mhsm" \
    grep -q -E "^m2mhsm:x:[0-9]+:[0-9]+:[^:]*:/var/lib/m2mhsm:/usr/sbin/nologin$" "$LAB/root/etc/passwd"
check "sysusers: m2mhsm is in group softhsm" grep -q -E "^softhsm:x:[0-9]+:m2mhsm$" "$LAB/root/etc/group"

finish
