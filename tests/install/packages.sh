#!/usr/bin/env bash
# The tree as a user gets it: Debian packages built with CPack from a fresh configure
# (prefix /usr, no -Werror: a packager's build), unpacked into a scratch root without a
# container, then
#   - each package's file list and dependencies;
#   - the provider exports only OSSL_provider_init, libm2mhsm exactly the public API;
#   - a consumer compiles against the unpacked -dev files with pkg-config and with
#     find_package, and runs against a SoftHSM token;
#   - openssl finds the installed provider;
#   - a lab made of the installed programs enrols a device and connects it to the MAF.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/tests/common/checks.sh"
. "$SRC/tests/common/wait.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/m2mhsm-pkg.XXXXXX")
LAB=""
cleanup() {
    [ -n "$LAB" ] && [ -f "$LAB/lab.env" ] && bash "$SRC/hsm-config/lab.sh" stop "$LAB" > /dev/null 2>&1
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# 1. Build and package.
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DM2MHSM_WERROR=OFF -DM2MHSM_TESTS=OFF -DM2MHSM_BENCH=OFF > "$WORK/configure.log" 2>&1 ||
    { cat "$WORK/configure.log"; exit 1; }
cmake --build "$WORK/build" -j "$(nproc)" > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
(cd "$WORK/build" && cpack -G DEB > "$WORK/cpack.log" 2>&1) || { cat "$WORK/cpack.log"; exit 1; }
ver=$(sed -n 's/^project(m2mhsm VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2> /dev/null || gcc -print-multiarch)
declare -A deb
for p in libm2mhsm0 libm2mhsm-dev m2mhsm-provider m2mhsm-tools; do
    deb[$p]="$WORK/build/${p}_${ver}_${arch}.deb"
    check "package $p was built" test -s "${deb[$p]}"
done

# 2. Contents and dependencies (printed: the issue asks for the file lists).
for p in "${!deb[@]}"; do
    echo "# $p: $(dpkg-deb -f "${deb[$p]}" Depends)"
    dpkg-deb -c "${deb[$p]}" | awk '{print "#   " $NF}' | grep -v '/$'
done
has() { dpkg-deb -c "${deb[$1]}" | awk '{print $NF}' | grep -qx -- "$2"; }
check "libm2mhsm0 holds the shared library" has libm2mhsm0 "./usr/lib/$multiarch/libm2mhsm.so.$ver"
check "libm2mhsm-dev holds the headers, the .so link, .pc and CMake files" bash -c "
    dpkg-deb -c '${deb[libm2mhsm-dev]}' | awk '{print \$NF}' > '$WORK/dev.list'
    grep -qx './usr/include/m2mhsm/tls.h' '$WORK/dev.list' &&
    grep -q '^./usr/lib/$multiarch/libm2mhsm.so ' <(dpkg-deb -c '${deb[libm2mhsm-dev]}' | awk '{print \$(NF-2), \$NF}') &&
    grep -qx './usr/lib/$multiarch/pkgconfig/m2mhsm.pc' '$WORK/dev.list' &&
    grep -qx './usr/lib/$multiarch/cmake/m2mhsm/m2mhsmConfig.cmake' '$WORK/dev.list'"
check "m2mhsm-provider puts m2mhsm.so in Debian's OpenSSL modules directory" \
    has m2mhsm-provider "./usr/lib/$multiarch/ossl-modules/m2mhsm.so"
check "m2mhsm-tools holds the CLI, the four programs, the units and their user" bash -c "
    for f in bin/m2mhsm bin/m2m-mef bin/m2m-maf bin/m2m-eb bin/m2m-enrolee \
        lib/systemd/system/m2m-mef.service lib/systemd/system/m2m-maf.service \
        lib/systemd/system/m2m-eb.service lib/sysusers.d/m2mhsm.conf; do
        dpkg-deb -c '${deb[m2mhsm-tools]}' | awk '{print \$NF}' | grep -qx ./usr/\$f || exit 1
    done"
check "libm2mhsm0 depends on Debian's OpenSSL and p11-kit libraries" \
    bash -c "dpkg-deb -f '${deb[libm2mhsm0]}' Depends | grep -q libssl3 && dpkg-deb -f '${deb[libm2mhsm0]}' Depends | grep -q libp11-kit0"
check "libm2mhsm-dev depends on libm2mhsm0 of the same version" \
    bash -c "dpkg-deb -f '${deb[libm2mhsm-dev]}' Depends | grep -q 'libm2mhsm0 (= $ver)'"
check "m2mhsm-tools depends on libevent and jansson" bash -c "
    d=\$(dpkg-deb -f '${deb[m2mhsm-tools]}' Depends)
    grep -q libevent <<< \"\$d\" && grep -q libjansson <<< \"\$d\""

# 3. Unpack into a scratch root.
ROOT=$WORK/root
for p in "${!deb[@]}"; do dpkg-deb -x "${deb[$p]}" "$ROOT"; done
LIBDIR=$ROOT/usr/lib/$multiarch

# 4. Exports.
nm -D --defined-only "$LIBDIR/ossl-modules/m2mhsm.so" | awk '{print $3}' > "$WORK/provider.syms"
echo "# nm -D --defined-only m2mhsm.so: $(tr '\n' ' ' < "$WORK/provider.syms")"
check "the provider module exports OSSL_provider_init and nothing else" \
    test "$(cat "$WORK/provider.syms")" = OSSL_provider_init
nm -D --defined-only "$LIBDIR/libm2mhsm.so.$ver" | awk '{print $3}' | sort > "$WORK/lib.syms"
check "libm2mhsm exports exactly the functions include/m2mhsm/*.h declare ($(wc -l < "$WORK/lib.syms"))" \
    diff -u "$WORK/build/libm2mhsm.api" "$WORK/lib.syms"
check "no internal symbol (ks_*, m2mhsm_pin_read) is exported" \
    bash -c "! grep -qE '^(ks_|m2mhsm_pin_read$|m2mhsm_fail$)' '$WORK/lib.syms'"

# 5. A token for the consumer.
mkdir -p "$WORK/tok"
bash "$SRC/hsm-config/softhsm-conf.sh" "$WORK/tok"
export SOFTHSM2_CONF=$WORK/tok/softhsm2.conf
(umask 077; openssl rand -hex 12 > "$WORK/tok/user.pin"; openssl rand -hex 12 > "$WORK/tok/so.pin")
MODULE=/usr/lib/softhsm/libsofthsm2.so
"$ROOT/usr/bin/m2mhsm" --module "$MODULE" --pin-source "file:$WORK/tok/user.pin" \
    token-init --label pkg --so-pin-source "file:$WORK/tok/so.pin" > /dev/null
openssl rand -hex 32 > "$WORK/tok/kpm.hex"
"$ROOT/usr/bin/m2mhsm" --module "$MODULE" --token pkcs11:token=pkg \
    --pin-source "file:$WORK/tok/user.pin" --lock-file "$WORK/tok/lock" \
    kpm import --kpm-id kpm-pkg-1 --key-file "$WORK/tok/kpm.hex" > /dev/null
consumer_args=("$MODULE" pkcs11:token=pkg "file:$WORK/tok/user.pin" "$WORK/tok/lock")

# 6. The consumer, with pkg-config and with find_package.
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
check "pkg-config resolves the unpacked prefix" \
    test "$(pkg-config --variable=includedir m2mhsm)" -ef "$ROOT/usr/include"
# shellcheck disable=SC2046 # pkg-config's words are the compiler's arguments
check "a consumer compiles and links with pkg-config" cc -Wall -Werror -o "$WORK/consumer-pc" \
    "$SRC/tests/install/consumer/consumer.c" $(pkg-config --cflags --libs m2mhsm)
out=$(LD_LIBRARY_PATH=$LIBDIR "$WORK/consumer-pc" "${consumer_args[@]}" 2>&1) || true
check "... and runs on the installed library: $out" grep -qx "timestamp 20261129T120000, 1 records" <<< "$out"
check "... which is the unpacked libm2mhsm" bash -c \
    "LD_LIBRARY_PATH='$LIBDIR' ldd '$WORK/consumer-pc' | grep -q '$LIBDIR/libm2mhsm.so.0'"
check "a consumer builds with find_package(m2mhsm)" bash -c "
    cmake -S '$SRC/tests/install/consumer' -B '$WORK/consumer-cmake' -DCMAKE_PREFIX_PATH='$ROOT/usr' \
        > '$WORK/consumer-cmake.log' 2>&1 && cmake --build '$WORK/consumer-cmake' >> '$WORK/consumer-cmake.log' 2>&1" ||
    cat "$WORK/consumer-cmake.log"
out=$(LD_LIBRARY_PATH=$LIBDIR "$WORK/consumer-cmake/consumer" "${consumer_args[@]}" 2>&1) || true
check "... and runs: $out" grep -qx "timestamp 20261129T120000, 1 records" <<< "$out"
unset PKG_CONFIG_PATH

# 7. openssl finds the installed provider by its modules directory.
check "openssl loads the installed provider (OPENSSL_MODULES)" bash -c "
    OPENSSL_MODULES='$LIBDIR/ossl-modules' openssl list -kdf-algorithms -provider m2mhsm -provider default |
        grep -q 'TLS1-PRF @ m2mhsm'"

# 8. A lab of installed programs: enrolment and a connection to the MAF.
LAB=$WORK/lab
bash "$SRC/hsm-config/lab.sh" init "$LAB" --bin "$ROOT/usr/bin" > "$WORK/lab-init.log" 2>&1 ||
    { cat "$WORK/lab-init.log"; exit 1; }
bash "$SRC/hsm-config/lab.sh" start "$LAB" > /dev/null
. "$LAB/lab.env"
check "the lab runs the installed programs" test "$M2M_BIN" = "$ROOT/usr/bin"
out=$("$M2M_BIN/m2m-enrolee" --config "$M2M_ENROLEE_CONFIG" connect --message hello 2> "$LAB/enrolee.log") || true
check "an installed m2m-enrolee enrols with the installed MEF and connects to the MAF" \
    grep -q "authenticated .* until" <<< "$out"
check "... the MAF fetched its Km" wait_log "$LAB/maf.log" "event=fetched "
finish
