#!/usr/bin/env bash
# Peer check with OpenSC's pkcs11-tool: every object the CLI writes is a secret key that
# pkcs11-tool sees as sensitive and not extractable, and pkcs11-tool cannot read a value.
. "$(dirname "$0")/lib.sh"
lab_init pkcs11tool interop

m() { "$M2MHSM" --token "$(token_uri interop)" --pin-source "file:$USER_PIN_FILE" "$@"; }
mq() { m "$@" >/dev/null; }
# pkcs11-tool has no pin-source; hand it the test PIN through its env: form, never argv.
export P11PIN; P11PIN=$(cat "$USER_PIN_FILE")
tool() { p11tool interop --login --pin env:P11PIN "$@"; }

token_ready interop
openssl rand -hex 32 > "$LAB/kpm.hex"
openssl rand -hex 48 > "$LAB/export.hex"
check "kpm import" mq kpm import --kpm-id dev-1 --key-file "$LAB/kpm.hex"
check "enrolee configure" mq enrolee configure --kpm-id dev-1 --target-id maf.example.com \
    --enrolee-id //sp.example.com/cse1/Cdev1 --enrolment-expiry 3600
check "ke import" mq ke import --kpm-id dev-1 --mef-fqdn mef.example.com \
    --exported-file "$LAB/export.hex"
ke_id=$(m list --json | python3 -c 'import json,sys; print([r["identity"] for r in json.load(sys.stdin) if r["kind"]=="ke"][0])')
check "derive km" mq derive km --ke-id "$ke_id" --maf-id maf.example.com
check "derive kpsa" mq derive kpsa --ke-id "$ke_id" --enrolee-b-id //sp.example.com/cse2

tool --list-objects --type secrkey > "$LAB/objects.txt" 2>/dev/null
# One block per object: "Secret Key Object ..." then indented lines.
awk '/^Secret Key Object/{if (b) print b; b=$0; next} {b=b "|" $0} END{if (b) print b}' \
    "$LAB/objects.txt" | grep 'label: *m2mhsm:' > "$LAB/ours.txt" || true
count=$(wc -l < "$LAB/ours.txt")
# The CLI's default forms: tls12 and tls13 for a PSK (no raw key), raw for Ke.
check "pkcs11-tool lists 7 m2mhsm secret keys (Kpm 2, Ke 1, Km 2, Kpsa 2), saw $count" \
    test "$count" -eq 7
check "every m2mhsm key is sensitive" \
    bash -c "! grep -v 'Access: *sensitive' '$LAB/ours.txt'"
check "no m2mhsm key is extractable" \
    bash -c "! grep -E 'Access:[^|]*(^|[^r] )extractable' '$LAB/ours.txt'"
data_seen=$(p11tool interop --list-objects --type data 2>/dev/null | grep -c m2mhsm || true)
check "pkcs11-tool sees no data object without login, saw $data_seen" test "$data_seen" -eq 0
# Whatever form the metadata takes on the kind (private CKO_DATA, or a private key object
# where CKO_DATA cannot be private: softokn), none of it, nor any key, is public.
p11tool interop --list-objects > "$LAB/public.txt" 2>&1 || true
public=$(grep -c 'm2mhsm' "$LAB/public.txt" || true)
check "pkcs11-tool without login sees no m2mhsm object of any class, saw $public" test "$public" -eq 0
tool --list-objects > "$LAB/all.txt" 2>/dev/null || true
check "... while with login it lists them" grep -q 'm2mhsm:' "$LAB/all.txt"
check "the Km's TLS 1.2 form is listed (the object read next exists)" \
    grep -q "label: *m2mhsm:km:$ke_id:tls12-pms" "$LAB/ours.txt"
refuse "pkcs11-tool cannot read a Km TLS form" \
    tool --read-object --type secrkey --label "m2mhsm:km:$ke_id:tls12-pms"
refuse "pkcs11-tool cannot read a Ke value" \
    tool --read-object --type secrkey --label "m2mhsm:ke:$ke_id:raw"
refuse "pkcs11-tool cannot read a Kpm TLS form" \
    tool --read-object --type secrkey --label "m2mhsm:kpm:dev-1:tls12-pms"

# Erasing the enrolee leaves exactly the Kpm's keys.
check "erase enrolee" mq erase --enrolee //sp.example.com/cse1/Cdev1
left=$(tool --list-objects --type secrkey 2>/dev/null | grep -c 'label: *m2mhsm:' || true)
check "after erase pkcs11-tool sees only the Kpm's 2 keys, saw $left" test "$left" -eq 2

finish
