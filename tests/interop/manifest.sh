#!/usr/bin/env bash
# m2mhsm kpm import --manifest against peers we did not write: a manifest of 240 devices
# (plain, AES-key-wrapped by openssl enc under a KEK that pkcs11-tool put in the token, some
# with an enrolment configuration) imports in one process; pkcs11-tool sees every key
# sensitive and not extractable; openssl s_client completes a TLS-PSK handshake with our
# token-backed server using the key the manifest gave for a plain and for a wrapped device;
# a re-run skips everything and a longer manifest resumes; every kind of bad line is named
# by number and nothing is written.
. "$(dirname "$0")/lib.sh"
: "${TLS_PEER:?TLS_PEER must name the tls_peer test program}"
: "${CRASH_TOOL:?CRASH_TOOL must name the crash_tool test program}"
lab_init manifest manifest

LOCK="$LAB/m2mhsm.lock"
tokargs=(--token "$(token_uri manifest)" --pin-source "file:$USER_PIN_FILE" --lock-file "$LOCK")
m() { "$M2MHSM" "${tokargs[@]}" "$@"; }
export P11PIN; P11PIN=$(cat "$USER_PIN_FILE")
tool() { p11tool manifest --login --pin env:P11PIN "$@"; }

server=""
stop_server() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    server=""
}
trap 'stop_server; lab_cleanup' EXIT

token_ready manifest

# A KEK that only the token and this test's openssl know (file removed once written).
kek=$(openssl rand -hex 32)
echo -n "$kek" | xxd -r -p > "$LAB/kek.bin"
write_kek() {
    tool --write-object "$LAB/kek.bin" --type secrkey --key-type AES:32 --label batch-kek \
        --usage-wrap --sensitive > "$LAB/kek.out" 2>&1 || { cat "$LAB/kek.out"; return 1; }
}
check "pkcs11-tool writes an AES KEK" write_kek
rm -f "$LAB/kek.bin"
# wrap HEX: the key AES-256-key-wrapped (RFC 3394) under the KEK, in base64.
wrap() {
    echo -n "$1" | xxd -r -p | openssl enc -id-aes256-wrap -K "$kek" -iv A6A6A6A6A6A6A6A6 -nopad | base64 -w0
}

# Which kinds unwrap an RFC 3394 blob (CKM_AES_KEY_WRAP), as measured: SoftHSM and NSS
# softokn do; opencryptoki 3.8's software token offers only AES ECB/CBC wrapping, and
# p11-kit 0.24's RPC (softhsm-remote) does not carry the mechanism. On those the wrapped lines
# are refused, each named ("token offers no AES key unwrap mechanism"), and the manifests
# below give those devices their key in plain.
case "$TOKEN_KIND" in
    opencryptoki | softhsm-remote) unwrap=0 ;;
    *) unwrap=1 ;;
esac
no_unwrap="token offers no AES key unwrap mechanism"
wrapped_or_plain() { # ID HEX: a manifest line's start
    if [ "$unwrap" = 1 ]; then
        echo "{\"kpm_id\":\"$1\",\"wrapped_b64\":\"$(wrap "$2")\",\"kek\":\"batch-kek\""
    else
        echo "{\"kpm_id\":\"$1\",\"key_hex\":\"$2\""
    fi
}

# make_manifest FIRST LAST: devices dev-FIRST..dev-LAST, keys recorded in keys.txt. Every
# 10th is wrapped where the kind unwraps (every 50th a 40-byte key, the others 32), every 7th
# configured. RFC 5649
# blobs are not used: SoftHSM 2.6.1 leaves CKA_VALUE_LEN empty after such an unwrap, so the
# key's length, which its TLS 1.2 form needs, is unknown (refused; docs/key-lifecycle.md).
make_manifest() {
    local i key line pool at=0
    pool=$(openssl rand -hex $((40 * ($2 - $1 + 1)))) # one process for every key
    for i in $(seq "$1" "$2"); do
        key=${pool:at:64}
        at=$((at + 80))
        if [ $((i % 50)) -eq 0 ]; then
            key=${pool:at-80:80}
            line=$(wrapped_or_plain "dev-$i" "$key")
        elif [ $((i % 10)) -eq 0 ]; then
            line=$(wrapped_or_plain "dev-$i" "$key")
        else
            line="{\"kpm_id\":\"dev-$i\",\"key_hex\":\"$key\""
        fi
        if [ $((i % 7)) -eq 0 ]; then
            line="$line,\"enrolee_id\":\"//sp.example.com/cse1/Cdev$i\",\"target_id\":\"maf.example.com\",\"enrolment_expiry\":\"3600\""
        fi
        echo "$line}"
        echo "dev-$i $key" >> "$LAB/keys.txt"
    done
}
key_of() { awk -v id="$1" '$1 == id {print $2}' "$LAB/keys.txt"; }

make_manifest 1 120 > "$LAB/first.jsonl"
{ cat "$LAB/first.jsonl"; make_manifest 121 240; } > "$LAB/all.jsonl"

# ---- import, resume, re-run ----
run() { # MANIFEST: exit status in $rc, stdout in out, stderr in err
    rc=0
    m kpm import --manifest "$1" > "$LAB/out" 2> "$LAB/err" < /dev/null || rc=$?
}
run "$LAB/first.jsonl"
check "120 devices import (exit 0)" test "$rc" -eq 0
check "the summary says 120 imported, 0 skipped, 0 failed" \
    grep -qx "imported 120, skipped 0 (KpmID present), failed 0" "$LAB/out"
check "no progress line when stderr is not a terminal" test ! -s "$LAB/err"
run "$LAB/all.jsonl"
check "the 240-device manifest resumes: 120 imported, 120 skipped" \
    grep -qx "imported 120, skipped 120 (KpmID present), failed 0" "$LAB/out"
m list --json > "$LAB/list.json"
count() { python3 -c 'import json,sys; print(sum(1 for r in json.load(open(sys.argv[1])) if r["kind"]==sys.argv[2]))' "$LAB/list.json" "$1"; }
check "the store lists 240 Kpm records, saw $(count kpm)" test "$(count kpm)" -eq 240
check "and 34 enrolment configurations (every 7th), saw $(count enrolment)" test "$(count enrolment)" -eq 34
check "dev-147's configuration is the manifest's" python3 -c '
import json, sys
r = [r for r in json.load(open(sys.argv[1])) if r["kind"] == "enrolment" and r["identity"] == "dev-147"]
sys.exit(not (len(r) == 1 and r[0]["enrolee"] == "//sp.example.com/cse1/Cdev147"
              and r[0]["target"] == "maf.example.com" and r[0]["enrolmentExpiry"] == "3600s"))' "$LAB/list.json"
run "$LAB/all.jsonl"
check "a re-run skips all 240 (exit 0)" \
    bash -c "[ $rc -eq 0 ] && grep -qx 'imported 0, skipped 240 (KpmID present), failed 0' '$LAB/out'"
m list --json > "$LAB/list2.json"
check "... and changes nothing on the token" cmp -s "$LAB/list.json" "$LAB/list2.json"
check "no key byte of the manifest appears in any output" \
    bash -c "! grep -qiFf <(awk '{print \$2}' '$LAB/keys.txt') '$LAB/out' '$LAB/err' '$LAB/list.json'"

# ---- pkcs11-tool: every key sensitive, none extractable ----
tool --list-objects --type secrkey > "$LAB/objects.txt" 2>/dev/null
awk '/^Secret Key Object/{if (b) print b; b=$0; next} {b=b "|" $0} END{if (b) print b}' \
    "$LAB/objects.txt" | grep 'label: *m2mhsm:kpm:' > "$LAB/ours.txt" || true
keys=$(wc -l < "$LAB/ours.txt")
check "pkcs11-tool lists 480 Kpm keys (the CLI's default forms tls12,tls13 x 240), saw $keys" \
    test "$keys" -eq 480
check "every one is sensitive" bash -c "! grep -v 'Access: *sensitive' '$LAB/ours.txt'"
check "none is extractable" bash -c "! grep -E 'Access:[^|]*(^|[^r] )extractable' '$LAB/ours.txt'"
refuse "pkcs11-tool cannot read a wrapped device's raw Kpm" \
    tool --read-object --type secrkey --label "m2mhsm:kpm:dev-30:raw"

# ---- the keys are the manifest's: TLS-PSK handshakes with openssl s_client ----
start_peer_server() {
    rm -f "$LAB/peer.out"
    "$TLS_PEER" server "${tokargs[@]}" --port 0 --count 1 > "$LAB/peer.out" 2>&1 &
    server=$!
    wait_log "$LAB/peer.out" "^listening port=[0-9]+$" || return 1
    port=$(sed -n 's/^listening port=//p' "$LAB/peer.out")
}
handshake() { # ID PSK-HEX: our server's verdict line
    start_peer_server
    timeout 20 openssl s_client -connect "127.0.0.1:$port" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
        -psk "$2" -psk_identity "$1" < /dev/null > "$LAB/client.out" 2>&1 || true
    wait_count "$LAB/peer.out" '^(ok|fail)' 1 > /dev/null 2>&1 || true
    grep -E '^(ok|fail)' "$LAB/peer.out" | head -1
    stop_server
}
check "s_client with dev-123's manifest key (plain): handshake" \
    grep -q "^ok identity=dev-123 " <<< "$(handshake dev-123 "$(key_of dev-123)")"
how="wrapped, RFC 3394"
[ "$unwrap" = 1 ] || how="plain: no unwrap on $TOKEN_KIND"
check "s_client with dev-230's manifest key ($how): handshake" \
    grep -q "^ok identity=dev-230 " <<< "$(handshake dev-230 "$(key_of dev-230)")"
check "s_client with dev-200's manifest key ($how, 40 bytes): handshake" \
    grep -q "^ok identity=dev-200 " <<< "$(handshake dev-200 "$(key_of dev-200)")"
check "negative control: dev-123 with dev-124's key is refused" \
    grep -q "^fail" <<< "$(handshake dev-123 "$(key_of dev-124)")"

# ---- bad lines: each named by number with its reason, and nothing written ----
make_manifest 301 305 > "$LAB/new.jsonl"
# bad REASON LINE: new.jsonl with LINE put in as line 3 is refused, naming line 3 and REASON.
bad() {
    local reason=$1 line=$2
    { sed -n 1,2p "$LAB/new.jsonl"; echo "$line"; sed -n '3,$p' "$LAB/new.jsonl"; } > "$LAB/bad.jsonl"
    run "$LAB/bad.jsonl"
    m list --json > "$LAB/list3.json"
    check "bad line ($reason): exit 1, 'bad.jsonl:3: ...$reason', nothing written" \
        bash -c "[ $rc -eq 1 ] && grep -F 'bad.jsonl:3: ' '$LAB/err' | grep -qF '$reason' \
            && grep -qF '1 bad line(s); nothing imported' '$LAB/err' && [ \$(wc -l < '$LAB/err') -eq 2 ] \
            && [ ! -s '$LAB/out' ] && cmp -s '$LAB/list.json' '$LAB/list3.json'"
}
k32=$(openssl rand -hex 32)
bad "not JSON" "{\"kpm_id\":\"dev-9\",\"key_hex\":$k32}"
check "... and jansson's excerpt of the line (the key) is not echoed" bash -c "! grep -qi '$k32' '$LAB/err'"
bad "not a JSON object" "[\"dev-9\",\"$k32\"]"
bad 'unknown field "kpm_key"' "{\"kpm_id\":\"dev-9\",\"kpm_key\":\"$k32\"}"
bad "unknown field" "{\"kpm_id\":\"dev-9\",\"key_hex\":\"$k32\",\"$k32\":1}"
check "... and a field name that could be a key is not echoed" bash -c "! grep -qi '$k32' '$LAB/err'"
bad "kpm_id is missing" "{\"key_hex\":\"$k32\"}"
bad "kpm_id must be a string" "{\"kpm_id\":9,\"key_hex\":\"$k32\"}"
bad "KpmID is malformed" "{\"kpm_id\":\"dev 9\",\"key_hex\":\"$k32\"}"
bad "KpmID is 129 characters" "{\"kpm_id\":\"$(printf 'k%.0s' $(seq 129))\",\"key_hex\":\"$k32\"}"
bad "key_hex: not hex digits in pairs" "{\"kpm_id\":\"dev-9\",\"key_hex\":\"zz$k32\"}"
bad "key_hex: a Kpm is 16 to 64 bytes, not 8" "{\"kpm_id\":\"dev-9\",\"key_hex\":\"$(openssl rand -hex 8)\"}"
bad "key_hex: a Kpm is 16 to 64 bytes, this one longer" "{\"kpm_id\":\"dev-9\",\"key_hex\":\"$(openssl rand -hex 65)\"}"
bad "give exactly one of key_hex and wrapped_b64" "{\"kpm_id\":\"dev-9\"}"
bad "give exactly one of key_hex and wrapped_b64" \
    "{\"kpm_id\":\"dev-9\",\"key_hex\":\"$k32\",\"wrapped_b64\":\"$(wrap "$k32")\",\"kek\":\"batch-kek\"}"
bad "wrapped_b64 needs kek" "{\"kpm_id\":\"dev-9\",\"wrapped_b64\":\"$(wrap "$k32")\"}"
bad "kek goes with wrapped_b64" "{\"kpm_id\":\"dev-9\",\"key_hex\":\"$k32\",\"kek\":\"batch-kek\"}"
bad "wrapped_b64: not base64" "{\"kpm_id\":\"dev-9\",\"wrapped_b64\":\"not*base64\",\"kek\":\"batch-kek\"}"
bad 'KEK "no-such-kek"' "{\"kpm_id\":\"dev-9\",\"wrapped_b64\":\"$(wrap "$k32")\",\"kek\":\"no-such-kek\"}"
if [ "$unwrap" = 0 ]; then
    bad "$no_unwrap" "{\"kpm_id\":\"dev-9\",\"wrapped_b64\":\"$(wrap "$k32")\",\"kek\":\"batch-kek\"}"
fi
[ "$unwrap" = 1 ] && why="C_UnwrapKey" || why=$no_unwrap
bad "$why" "{\"kpm_id\":\"dev-9\",\"wrapped_b64\":\"$(openssl rand 40 | base64 -w0)\",\"kek\":\"batch-kek\"}"
[ "$unwrap" = 1 ] && why="must be longer than 30 bytes" || why=$no_unwrap
bad "$why" "{\"kpm_id\":\"dev-9\",\"wrapped_b64\":\"$(wrap "$(openssl rand -hex 16)")\",\"kek\":\"batch-kek\"}"
bad "wrapped Kpm must be 24 to 80 bytes" "{\"kpm_id\":\"dev-9\",\"wrapped_b64\":\"$(openssl rand 36 | base64 -w0)\",\"kek\":\"batch-kek\"}"
bad "go together" "{\"kpm_id\":\"dev-9\",\"key_hex\":\"$k32\",\"enrolee_id\":\"//sp.example.com/cse1/Cdev9\"}"
bad "CSE-ID/AE-ID is malformed" "{\"kpm_id\":\"dev-9\",\"key_hex\":\"$k32\",\"enrolee_id\":\"cse1\",\"target_id\":\"maf.example.com\",\"enrolment_expiry\":\"60\"}"
bad "Enrolment Target ID is malformed" "{\"kpm_id\":\"dev-9\",\"key_hex\":\"$k32\",\"enrolee_id\":\"//sp.example.com/cse1/Cdev9\",\"target_id\":\"MAF!\",\"enrolment_expiry\":\"60\"}"
bad "enrolment_expiry:" "{\"kpm_id\":\"dev-9\",\"key_hex\":\"$k32\",\"enrolee_id\":\"//sp.example.com/cse1/Cdev9\",\"target_id\":\"maf.example.com\",\"enrolment_expiry\":\"0\"}"
bad "valid_until:" "{\"kpm_id\":\"dev-9\",\"key_hex\":\"$k32\",\"valid_until\":\"2026-11-27\"}"
bad "valid_until is not in the future" "{\"kpm_id\":\"dev-9\",\"key_hex\":\"$k32\",\"valid_until\":\"20200101T000000\"}"
bad 'KpmID "dev-301" is also on line 1' "{\"kpm_id\":\"dev-301\",\"key_hex\":\"$k32\"}"
run "$LAB/new.jsonl"
check "the same 5 new devices without the bad line import" \
    grep -qx "imported 5, skipped 0 (KpmID present), failed 0" "$LAB/out"

# ---- a device half written by a crash: the store's repair removes it, the re-run writes it ----
check "crash_tool leaves dev-331 torn (metadata, one key missing, an hour old)" \
    "$CRASH_TOOL" "$M2MHSM_MODULE" "$(token_uri manifest)" "file:$USER_PIN_FILE" "$LOCK" torn dev-331
make_manifest 331 335 > "$LAB/crash.jsonl"
run "$LAB/crash.jsonl"
check "the import repairs the torn record and imports all 5 (dev-331 too)" \
    bash -c "[ $rc -eq 0 ] && grep -qx 'imported 5, skipped 0 (KpmID present), failed 0' '$LAB/out' \
        && grep -q 'repaired the store: 0 orphan key(s), 1 torn record(s)' '$LAB/err'"
check "s_client with dev-331's manifest key: handshake" \
    grep -q "^ok identity=dev-331 " <<< "$(handshake dev-331 "$(key_of dev-331)")"

# ---- progress on a terminal: done/total, rate, ETA, then the summary ----
make_manifest 306 330 > "$LAB/tty.jsonl"
script -qec "$(printf '%q ' "$M2MHSM" "${tokargs[@]}" kpm import --manifest "$LAB/tty.jsonl")" \
    /dev/null > "$LAB/tty.out" 2>&1 < /dev/null || true
check "on a terminal a progress line shows done/total, rate and ETA" \
    grep -qE '25/25  [0-9.]+/s  ETA 0:00:00' "$LAB/tty.out"
check "... and the summary follows" grep -q "imported 25, skipped 0 (KpmID present), failed 0" "$LAB/tty.out"

finish
