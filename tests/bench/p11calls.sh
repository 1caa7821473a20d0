#!/usr/bin/env bash
# PKCS#11 calls (= round trips on a remote module) per enrolment at m2m-mef and per handshake
# at m2m-maf (docs/performance.md): the services run on tests/fault's module in its counting
# mode, in front of the lab's token module; two fresh labs, one doing 1 enrolment and 1
# handshake, the other 1+N of each; the difference divided by N, per function. Enrolments
# re-enrol one KpmID (each replaces the previous Ke); handshakes repeat the last KeID (the
# first fetches Km, the rest are index hits). Run by hand; not a ctest.
#
#   tests/bench/p11calls.sh --build BUILD_DIR [--n 50] [--token-kind softhsm|softhsm-remote]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build="" n=50 kind=softhsm
while [ $# -gt 0 ]; do
    case $1 in
        --build) build=${2:?}; shift 2 ;;
        --n) n=${2:?}; shift 2 ;;
        --token-kind) kind=${2:?}; shift 2 ;;
        *) echo "usage: $0 --build BUILD_DIR [--n N] [--token-kind KIND]" >&2; exit 2 ;;
    esac
done
build=$(cd "${build:?--build BUILD_DIR is required}" && pwd)
fault="$build/tests/fault/libm2mfault.so"
[ -r "$fault" ] || { echo "$fault is missing: build the tests" >&2; exit 1; }

# one_run DIR ENROLMENTS HANDSHAKES: a lab on the counting module; prints its report file.
one_run() {
    local d=$1 e=$2 h=$3 i x keid km real
    bash "$repo/hsm-config/lab.sh" init "$d" --build "$build" --token-kind "$kind" > /dev/null
    # shellcheck disable=SC1091
    . "$d/lab.env"
    real=$M2M_MODULE
    for s in mef maf; do
        python3 - "$d/$s.json" "$fault" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["pkcs11"]["module"] = sys.argv[2]
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
    done
    M2M_FAULT_MODULE=$real M2M_FAULT_REPORT="$d/calls" bash "$repo/hsm-config/lab.sh" start "$d" > /dev/null
    local kpm
    kpm=$(tr -d ' \n' < "$M2M_KPM_HEX_FILE")
    for ((i = 0; i < e; i++)); do
        x=$(timeout 10 openssl s_client -connect "127.0.0.1:$M2M_MEF_PORT" -tls1_2 \
            -cipher PSK-AES128-CBC-SHA256 -psk "$kpm" -psk_identity "$M2M_KPM_ID" \
            -servername "$M2M_MEF_FQDN" -keymatexport EXPORTER-oneM2M-Bootstrap \
            -keymatexportlen 48 < /dev/null 2>&1 | awk '/Keying material:/{print tolower($3)}')
        [ "${#x}" = 96 ] || { echo "enrolment $i failed" >&2; exit 1; }
    done
    keid="${x:0:32}"
    keid="${keid^^}@$M2M_MEF_FQDN"
    km=$(printf 'oneM2M Enrolment Key to Master Credential derivation%s' "$M2M_MAF_ID" |
        openssl mac -digest SHA256 -macopt "hexkey:${x:32:64}" HMAC | tr 'A-F' 'a-f')
    for ((i = 0; i < h; i++)); do
        timeout 10 openssl s_client -connect "127.0.0.1:$M2M_MAF_PORT" -tls1_2 -psk "$km" \
            -psk_identity "$keid" -servername "$M2M_MAF_ID" < /dev/null 2>&1 |
            grep -q "Cipher is PSK" || { echo "handshake $i failed" >&2; exit 1; }
    done
    MEF_PID=$(cat "$d/mef.pid") MAF_PID=$(cat "$d/maf.pid")
    bash "$repo/hsm-config/lab.sh" stop "$d" > /dev/null
    echo "$MEF_PID $MAF_PID"
}

a=$(mktemp -d /tmp/m2m-p11calls-a.XXXXXX) b=$(mktemp -d /tmp/m2m-p11calls-b.XXXXXX)
rmdir "$a" "$b"
trap 'rm -rf "$a" "$b"' EXIT
read -r mef_a maf_a <<< "$(one_run "$a" 1 1)"
read -r mef_b maf_b <<< "$(one_run "$b" $((n + 1)) $((n + 1)))"
# per PID-A PID-B FILE-A FILE-B: "function calls-per-op" for every function that moved.
per() {
    awk -v pa="$1" -v pb="$2" -v n="$n" '
        FNR == 1 { file++ }
        file == 1 && $1 == pa { base[$2] = $3 }
        file == 2 && $1 == pb { d = $3 - base[$2]; if (d > 0) printf " %s %.2f", $2, d / n }
        END { print "" }' "$3" "$4"
}
echo "token kind $kind, N = $n"
echo "per enrolment (m2m-mef, re-enrolment of one KpmID):$(per "$mef_a" "$mef_b" "$a/calls" "$b/calls")"
echo "per handshake (m2m-maf, index hit, TLS 1.2 PSK):$(per "$maf_a" "$maf_b" "$a/calls" "$b/calls")"
