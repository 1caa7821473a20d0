#!/usr/bin/env bash
# The token self-test at every start of m2m-mef, m2m-maf, m2m-eb and m2m-enrolee: on the lab's
# SoftHSM tokens they start and log that keys stay in; on NSS softokn, whose copy-then-wrap
# lets a key out, each refuses to start (exit 1, an error naming the leaks) unless its
# "pkcs11" section has "accept_extractable_keys": true, and then it starts with a warning.
. "$(dirname "$0")/lib.sh"
e2e_lab_init selftest

SOFTOKN=/usr/lib/x86_64-linux-gnu/libsoftokn3.so
NSSDB="$LAB/nssdb"
mkdir -p "$NSSDB"
printf 'softokn-user-1234\n' > "$LAB/nss.pin"
chmod 600 "$LAB/nss.pin"
certutil -N -d "sql:$NSSDB" -f "$LAB/nss.pin"
NSS_ARGS="configdir='sql:$NSSDB' certPrefix='' keyPrefix='' secmod='secmod.db' flags="

# on_softokn PROG NAME [ACCEPT]: a copy of PROG's lab file whose token is softokn's.
on_softokn() {
    local prog=$1 name=$2
    cp "$LAB/$prog.json" "$LAB/$name.json"
    set_json "$LAB/$name.json" - pkcs11 "{\"module\": \"$SOFTOKN\", \"token\": \"pkcs11:token=NSS%20Certificate%20DB\", \"pin_source\": \"file:$LAB/nss.pin\"${3:+, \"accept_extractable_keys\": $3}}"
    echo "$LAB/$name.json"
}

# run PROG FILE: start it once on softokn (init args: the database; the enrolee bootstraps
# against a MEF that is not running); its exit status in $rc, its log in $LAB/err.
run() {
    local prog=$1 file=$2 args=()
    [ "$prog" = enrolee ] && args=(bootstrap)
    rc=0
    M2MHSM_MODULE_INIT_ARGS="$NSS_ARGS" timeout 60 "$M2M_BIN/m2m-$prog" --config "$file" "${args[@]}" > "$LAB/out" 2> "$LAB/err" || rc=$?
}

for prog in mef maf eb enrolee; do
    run "$prog" "$(on_softokn "$prog" "$prog-softokn")"
    check "m2m-$prog refuses softokn: exit 1 ($rc)" test "$rc" -eq 1
    check "m2m-$prog names the leaks: $(grep -o 'event=token-lets-keys-out .*leaks="[a-z_,]*"' "$LAB/err" | head -1)" \
        grep -q 'event=token-lets-keys-out .*leaks="[a-z_,]*copy_extractable' "$LAB/err"
    check "m2m-$prog says how to accept it" grep -q 'accept_extractable_keys to true' "$LAB/err"
    check "m2m-$prog stopped at the self-test: no key store, no TLS" \
        bash -c "! grep -qE 'event=(bootstrap-failed|token-selftest |listening)' '$LAB/err'"
done

# Accepted explicitly: the device starts, warns, and goes on to contact its MEF (not
# running here, so its bootstrap fails after the start).
run enrolee "$(on_softokn enrolee enrolee-accept true)"
check "m2m-enrolee on softokn with accept_extractable_keys warns: $(grep -o 'event=token-lets-keys-out-accepted.*' "$LAB/err" | head -c 160)" \
    grep -q 'level=warn .*event=token-lets-keys-out-accepted .*accept_extractable_keys=true' "$LAB/err"
check "m2m-enrolee then runs: it tried the MEF ($(grep -o 'event=bootstrap-failed' "$LAB/err" | head -1))" \
    grep -q 'event=bootstrap-failed' "$LAB/err"

# false is as good as absent.
run enrolee "$(on_softokn enrolee enrolee-false false)"
check "accept_extractable_keys false refuses as absent ($rc)" test "$rc" -eq 1
check "  with the same error" grep -q 'event=token-lets-keys-out ' "$LAB/err"

# The lab's SoftHSM tokens keep keys in: the servers start without a warning.
bash "$LABSH" start "$LAB" > /dev/null
for prog in mef maf eb; do
    check "m2m-$prog on SoftHSM: self-test passed" \
        grep -q 'event=token-selftest non_extractable_enforced=true derive_in_token=false' "$LAB/$prog.log"
    check "m2m-$prog on SoftHSM: no warning" bash -c "! grep -q 'token-lets-keys-out' '$LAB/$prog.log'"
done
finish
