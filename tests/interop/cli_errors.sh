#!/usr/bin/env bash
# The CLI under bad input: the right exit code (1 failure, 2 usage), a one-line error that
# names the cause, no secret in the output, and the token exactly as it was.
. "$(dirname "$0")/lib.sh"
lab_init clierrors cli

uri=$(token_uri cli)
m() { "$M2MHSM" --token "$uri" --pin-source "file:$USER_PIN_FILE" "$@"; }

# expect CODE WORDS COMMAND...: exit status CODE, stderr one line containing WORDS.
expect() {
    local code=$1 words=$2; shift 2
    checks=$((checks + 1))
    local rc=0
    "$@" > "$LAB/out" 2> "$LAB/err" || rc=$?
    if [ "$rc" -eq "$code" ] && [ "$(wc -l < "$LAB/err")" -eq 1 ] && grep -qF -- "$words" "$LAB/err" \
        && ! grep -qF -- "$(cat "$USER_PIN_FILE")" "$LAB/err" "$LAB/out"; then
        echo "ok - exit $code: $words"
    else
        echo "not ok - wanted exit $code and '$words', got $rc: $(cat "$LAB/err")"
        failures=$((failures + 1))
    fi
}

# tokens_now: what shows whether a token was initialised. SoftHSM: its token directories.
# Another kind: the labels of the initialised tokens pkcs11-tool lists that are "cli" or
# start with "cli-" (on opencryptoki the module also lists other labs' tokens).
tokens_now() {
    if [ "$TOKEN_KIND" = softhsm ]; then
        ls "$LAB/tokens"
    else
        p11tool_module -L 2> /dev/null | sed -n 's/^ *token label *: *//p' | grep -E '^cli(-|$)' | sort || true
    fi
}
token_ready cli
openssl rand -hex 32 > "$LAB/kpm.hex"
m kpm import --kpm-id dev-1 --key-file "$LAB/kpm.hex" >/dev/null
m list --json > "$LAB/before.json"
tokens_now > "$LAB/tokens-before"
check "the token is listed before the errors" test -s "$LAB/tokens-before"

long=$(printf 'k%.0s' $(seq 129))
expect 1 "KpmID is empty" m kpm import --kpm-id "" --key-file "$LAB/kpm.hex"
expect 1 "KpmID is 129 characters" m kpm import --kpm-id "$long" --key-file "$LAB/kpm.hex"
expect 1 "not ASCII" m kpm import --kpm-id "d$(printf '\xc3\xa9')v" --key-file "$LAB/kpm.hex"
expect 1 "malformed" m kpm import --kpm-id "dev 2" --key-file "$LAB/kpm.hex"
expect 1 "exists" m kpm import --kpm-id dev-1 --key-file "$LAB/kpm.hex"
echo "zz-not-hex" > "$LAB/bad.hex"
expect 1 "not hex" m kpm import --kpm-id dev-2 --key-file "$LAB/bad.hex"
expect 1 "cannot read" m kpm import --kpm-id dev-2 --key-file "$LAB/missing.hex"
expect 1 "Kpm must be" m kpm import --kpm-id dev-2 --key-file <(echo 0011)
expect 2 "--valid-until" m kpm import --kpm-id dev-2 --key-file "$LAB/kpm.hex" --valid-until 2026-11-27
expect 2 "--enrolment-expiry" m enrolee configure --kpm-id dev-1 --target-id maf.example.com \
    --enrolee-id //sp.example.com/cse1/Cdev1 --enrolment-expiry 20261131T000000
expect 2 "--enrolment-expiry" m enrolee configure --kpm-id dev-1 --target-id maf.example.com \
    --enrolee-id //sp.example.com/cse1/Cdev1 --enrolment-expiry 0
expect 1 "Enrolment Target ID is malformed" m enrolee configure --kpm-id dev-1 \
    --target-id "MAF!" --enrolee-id //sp.example.com/cse1/Cdev1 --enrolment-expiry 60
expect 1 "CSE-ID/AE-ID is malformed" m enrolee configure --kpm-id dev-1 \
    --target-id maf.example.com --enrolee-id "cse1" --enrolment-expiry 60
expect 1 "absolute CSE-ID/AE-ID is malformed" m enrolee configure --kpm-id dev-1 \
    --target-id maf.example.com --enrolee-id "/cse1/Cdev1" --enrolment-expiry 60
expect 2 "enrolee revoke takes --kpm-id ID" m enrolee revoke
expect 1 "no enrolment of that KpmID" m enrolee revoke --kpm-id dev-1 # its Kpm stays
expect 1 "KpmID is malformed" m enrolee revoke --kpm-id "dev 2"
expect 2 "exactly one of --key-file and --wrapped" m kpm import --kpm-id dev-2
expect 2 "unknown command" m frobnicate
expect 2 "erase takes exactly one" m erase
expect 2 "caps takes only --json" m caps --yaml
expect 1 "no key with that id" m erase --key-id dev-9
# A second token with a label in use would make pkcs11:token=cli match 2 tokens.
expect 1 'a token labelled "cli" exists already' \
    m token-init --label cli --so-pin-source "file:$SO_PIN_FILE"
check "... and no token was initialised" cmp -s "$LAB/tokens-before" <(tokens_now)
# Configuration problems.
(umask 077; echo wrong-pin > "$LAB/wrong.pin")
# PIN files that another account could read or write, or that are no file at all.
for mode in 640 604 620 602 660 644; do
    cp "$USER_PIN_FILE" "$LAB/loose.pin"
    chmod "$mode" "$LAB/loose.pin"
    expect 1 "loose.pin: mode 0$mode lets group or others read or write the PIN" \
        "$M2MHSM" --token "$uri" --pin-source "file:$LAB/loose.pin" list
done
expect 1 "loose.pin: mode 0644 lets group or others" \
    m token-init --label cli-other --so-pin-source "file:$LAB/loose.pin"
check "... and no token was initialised" cmp -s "$LAB/tokens-before" <(tokens_now)
expect 1 "$LAB: not a regular file" "$M2MHSM" --token "$uri" --pin-source "file:$LAB" list
mkfifo "$LAB/pin.fifo"
expect 1 "pin.fifo: not a regular file" \
    "$M2MHSM" --token "$uri" --pin-source "file:$LAB/pin.fifo" list
chmod 600 "$LAB/loose.pin"
ln -s "$LAB/loose.pin" "$LAB/link.pin"
opens() { "$M2MHSM" --token "$uri" --pin-source "file:$1" list > /dev/null; }
check "a 0600 PIN file, also through a symlink, still opens the token" opens "$LAB/link.pin"
expect 1 "CKR_PIN_INCORRECT" "$M2MHSM" --token "$uri" --pin-source "file:$LAB/wrong.pin" list
expect 1 "cannot read" "$M2MHSM" --token "$uri" --pin-source "file:$LAB/none.pin" list
expect 1 "file:PATH" "$M2MHSM" --token "$uri" --pin-source "$(cat "$USER_PIN_FILE")" list
expect 1 "no initialised token matches" m --token pkcs11:token=nope list
expect 1 "not found or not readable" "$M2MHSM" --module /nonexistent.so --token "$uri" \
    --pin-source "file:$USER_PIN_FILE" list
# A shared library that is not a PKCS#11 module, and modules whose C_Initialize fails: the
# error names the call and, for C_Initialize, the CKR.
notp11=$(ldd "$(command -v openssl)" | awk '/libcrypto/ { print $3 }')
expect 1 "p11_kit_module_load($notp11)" "$M2MHSM" --module "$notp11" --token "$uri" \
    --pin-source "file:$USER_PIN_FILE" list
# SoftHSM without its configuration fails C_Initialize, whatever the run's kind.
softhsm=/usr/lib/softhsm/libsofthsm2.so
expect 1 "C_Initialize($softhsm): CKR_" env -u M2MHSM_MODULE_INIT_ARGS SOFTHSM2_CONF="$LAB/none.conf" \
    "$M2MHSM" --module "$softhsm" --token "$uri" --pin-source "file:$USER_PIN_FILE" list
# p11-kit's client initialises without its server and then lists no slot (measured): the
# error says so.
if [ "$TOKEN_KIND" = softhsm-remote ]; then
    expect 1 "the module lists 0 slots: is its token or server reachable?" \
        env P11_KIT_SERVER_ADDRESS="unix:path=$LAB/no-server.sock" \
        "$M2MHSM" --token "$uri" --pin-source "file:$USER_PIN_FILE" list
fi
softokn=/usr/lib/x86_64-linux-gnu/libsoftokn3.so
if [ -r "$softokn" ]; then # NSS softokn needs init args (docs/tokens.md)
    expect 1 "C_Initialize($softokn): CKR_ARGUMENTS_BAD" env -u M2MHSM_MODULE_INIT_ARGS \
        "$M2MHSM" --module "$softokn" --token "$uri" --pin-source "file:$USER_PIN_FILE" list
    expect 1 "C_Initialize($softokn, with init args): CKR_" \
        env M2MHSM_MODULE_INIT_ARGS="configdir='sql:$LAB/no-such-dir' flags=readOnly" \
        "$M2MHSM" --module "$softokn" --token "$uri" --pin-source "file:$USER_PIN_FILE" list
fi
m list --json > "$LAB/after.json"
check "the token is exactly as it was" cmp -s "$LAB/before.json" "$LAB/after.json"

finish
