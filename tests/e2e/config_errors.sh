#!/usr/bin/env bash
# Bad configuration files: m2m-mef, m2m-maf, m2m-eb and m2m-enrolee each stop at start with exit
# status 1 and an error line that names the file or field and the cause, and change
# nothing: the MEF applies no Enrolee to its token. The lab's own
# files (and every file the other suites edit) still start: see the other e2e suites.
. "$(dirname "$0")/lib.sh"
e2e_lab_init configerrors

# refused WORDS PROG FILE: PROG (mef, maf, eb or enrolee) with FILE exits 1, and the last line on
# its stderr contains WORDS.
refused() {
    local words=$1 prog=$2 file=$3 rc=0 args=()
    [ "$prog" = enrolee ] && args=(bootstrap)
    checks=$((checks + 1))
    on_token "$prog" "$M2M_BIN/m2m-$prog" --config "$file" "${args[@]}" > "$LAB/out" 2> "$LAB/err" ||
        rc=$?
    if [ "$rc" -eq 1 ] && grep -qF -- "$words" "$LAB/err"; then
        echo "ok - m2m-$prog refuses: $(grep -F -- "$words" "$LAB/err" | head -1)"
    else
        echo "not ok - m2m-$prog: wanted exit 1 and '$words', got $rc: $(cat "$LAB/err")"
        failures=$((failures + 1))
    fi
}

# variant PROG NAME SECTION KEY JSON-VALUE: a copy of PROG's lab file with one field set.
variant() {
    local prog=$1 name=$2
    cp "$LAB/$prog.json" "$LAB/$name.json"
    set_json "$LAB/$name.json" "$3" "$4" "$5"
    echo "$LAB/$name.json"
}

mef_before=$(kinds_on mef)

# 1. Ports outside 1-65535, in every address field.
refused 'config: mef.https: "127.0.0.1:99999": the port is out of range (1 to 65535)' \
    mef "$(variant mef p1 mef https '"127.0.0.1:99999"')"
refused 'config: mef.bootstrap_tls: "127.0.0.1:0": the port is out of range' \
    mef "$(variant mef p2 mef bootstrap_tls '"127.0.0.1:0"')"
refused 'config: mef.bootstrap_dtls: "127.0.0.1:+5684": the port must be decimal digits only' \
    mef "$(variant mef p3 mef bootstrap_dtls '"127.0.0.1:+5684"')"
refused 'config: maf.listen: "127.0.0.1:": the port is empty' \
    maf "$(variant maf p4 maf listen '"127.0.0.1:"')"
refused 'config: maf.listen: "127.0.0.1:000443": the port has more than 5 digits' \
    maf "$(variant maf p5 maf listen '"127.0.0.1:000443"')"
refused 'config: mefs[0].url: "https://127.0.0.1:65536": the port is out of range' \
    maf "$(variant maf p6 - mefs "[{\"fqdn\": \"$M2M_MEF_FQDN\", \"url\": \"https://127.0.0.1:65536\"}]")"
refused 'config: mefs[0].url: "https://127.0.0.1:/": the port is empty' \
    maf "$(variant maf p7 - mefs "[{\"fqdn\": \"$M2M_MEF_FQDN\", \"url\": \"https://127.0.0.1:/\"}]")"
refused 'config: enrolee.mef_uri: "tls://127.0.0.1:99999": the port is out of range' \
    enrolee "$(variant enrolee p8 enrolee mef_uri '"tls://127.0.0.1:99999"')"
refused 'config: enrolee.target_uri: "tls://127.0.0.1:-1": the port must be decimal digits only' \
    enrolee "$(variant enrolee p9 enrolee target_uri '"tls://127.0.0.1:-1"')"
refused 'config: maf.listen_dtls: "127.0.0.1:99999": the port is out of range' \
    maf "$(variant maf p10 maf listen_dtls '"127.0.0.1:99999"')"
refused 'config: enrolee.target_uri: expected tls|tls13|dtls://host:port' \
    enrolee "$(variant enrolee p11 enrolee target_uri '"coaps://127.0.0.1:5684"')"

# 2. Unknown fields, at every level.
refused "config $LAB/u1.json: mef.sweep_intervall: unknown field" \
    mef "$(variant mef u1 mef sweep_intervall 5)"
refused "config $LAB/u2.json: enrolee: unknown field" \
    mef "$(variant mef u2 - enrolee '[]')"
refused "config $LAB/u3.json: pkcs11.pin: unknown field" \
    mef "$(variant mef u3 pkcs11 pin '"1234"')"
refused "config $LAB/u4.json: enrolees[0].expiry: unknown field" \
    mef "$(variant mef u4 - enrolees "[{\"kpm_id\": \"$M2M_KPM_ID\", \"enrolee_id\": \"$M2M_ENROLEE_ID\", \"enrolment_target\": \"$M2M_MAF_ID\", \"enrolment_expiry\": \"60\", \"expiry\": \"60\"}]")"
refused "config $LAB/u5.json: maf.max_fetch: unknown field" \
    maf "$(variant maf u5 maf max_fetch 10)"
refused "config $LAB/u6.json: mefs[0].port: unknown field" \
    maf "$(variant maf u6 - mefs "[{\"fqdn\": \"$M2M_MEF_FQDN\", \"url\": \"https://127.0.0.1:1\", \"port\": 1}]")"
refused "config $LAB/u7.json: enrolee.renewal_margn: unknown field" \
    enrolee "$(variant enrolee u7 enrolee renewal_margn 5)"

# 3. An entry listed twice. The first entry alone would be valid: the MEF must not apply it.
entry() { echo "{\"kpm_id\": \"$1\", \"enrolee_id\": \"$M2M_ENROLEE_ID\", \"enrolment_target\": \"$M2M_MAF_ID\", \"enrolment_expiry\": \"$2\"}"; }
refused "config $LAB/d1.json: enrolees[1].kpm_id: \"$M2M_KPM_ID\" is listed twice (also enrolees[0])" \
    mef "$(variant mef d1 - enrolees "[$(entry "$M2M_KPM_ID" 60), $(entry "$M2M_KPM_ID" 120)]")"
refused "config $LAB/d2.json: enrolees[2]: Enrolment Expiry" \
    mef "$(variant mef d2 - enrolees "[$(entry "$M2M_KPM_ID" 60), $(entry kpm-2 60), $(entry kpm-3 never)]")"
refused "config $LAB/d3.json: mefs[1].fqdn: \"$M2M_MEF_FQDN\" is listed twice (also mefs[0])" \
    maf "$(variant maf d3 - mefs "[{\"fqdn\": \"$M2M_MEF_FQDN\", \"url\": \"https://127.0.0.1:1\"}, {\"fqdn\": \"$M2M_MEF_FQDN\", \"url\": \"https://127.0.0.1:2\"}]")"

# 4. A PIN file that group or others may read.
cp "$M2M_MEF_PIN_FILE" "$LAB/loose.pin"
chmod 640 "$LAB/loose.pin"
refused "pin-source $LAB/loose.pin: mode 0640 lets group or others read or write the PIN" \
    mef "$(variant mef k1 pkcs11 pin_source "\"file:$LAB/loose.pin\"")"
refused "config: pkcs11.max_sessions: must be 0 (the module's limit) or at least 2" \
    mef "$(variant mef s1 pkcs11 max_sessions 1)"
refused 'config: pkcs11.session_wait_ms: must be an integer from 0 to 600000' \
    maf "$(variant maf s2 pkcs11 session_wait_ms -1)"

# 5. The Enrolee B's file (m2m-eb: the MAF's program, its own section and identity).
refused 'config: enrolee_b.enrolee_b_id: ' \
    eb "$(variant eb b1 enrolee_b enrolee_b_id '"eb.example.com"')"
refused "config $LAB/b2.json: enrolee_b.maf_id: unknown field" \
    eb "$(variant eb b2 enrolee_b maf_id "\"$M2M_MAF_ID\"")"
refused 'config: enrolee_b.listen: "127.0.0.1:0": the port is out of range' \
    eb "$(variant eb b3 enrolee_b listen '"127.0.0.1:0"')"
refused "config $M2M_MAF_CONFIG: needs a \"enrolee_b\" section" eb "$M2M_MAF_CONFIG"
refused "config $M2M_EB_CONFIG: needs a \"maf\" section" maf "$M2M_EB_CONFIG"
refused 'config: maf.maf_id: ' maf "$(variant maf b4 maf maf_id "\"$M2M_EB_ID\"")"

check "the MEF token is as it was: no Enrolee applied ($mef_before)" \
    test "$(kinds_on mef)" = "$mef_before"
finish
