#!/usr/bin/env bash
# Every test: a normal build (gcc) with all suites, a clang build, the suites again under
# AddressSanitizer+UndefinedBehaviorSanitizer, the threaded suite under ThreadSanitizer,
# valgrind memcheck on the token suites, and every libFuzzer harness for a short run (20 s
# each; scripts/fuzz.sh). The e2e suites run the services (lab.sh) in the gcc and ASan
# stages, and on the other token kinds (softhsm-remote, opencryptoki, softokn) in the gcc
# stage only (its time with them: docs/tokens.md, "Matrix").
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

jobs=$(nproc)

echo "== clang-format (.clang-format)"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror
build() { # DIR CMAKE-ARGS...
    local dir=$1; shift
    cmake -S . -B "$dir" "$@" > /dev/null
    cmake --build "$dir" -j "$jobs" > "$dir/build.log" 2>&1 || { cat "$dir/build.log"; exit 1; }
}
run_ctest() { # DIR CTEST-ARGS...
    local dir=$1; shift
    (cd "$dir" && ctest --output-on-failure -j "$jobs" "$@")
}

echo "== gcc -O2 build, all suites, the e2e suites on every token kind (docs/tokens.md)"
build build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DM2MHSM_TOKEN_KINDS="softhsm;softhsm-remote;opencryptoki;softokn"
run_ctest build-test

echo "== clang build (-Wall -Wextra -Werror)"
build build-clang -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang

echo "== ASan + UBSan, all suites"
build build-asan -DCMAKE_BUILD_TYPE=Debug -DM2MHSM_SANITIZE=ON
# (the package test builds its own tree without sanitizers: once, in the gcc stage, is enough)
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run_ctest build-asan -LE install

echo "== TSan, threads, processes and fork"
build build-tsan -DCMAKE_BUILD_TYPE=Debug -DM2MHSM_TSAN=ON
TSAN_OPTIONS=halt_on_error=1 run_ctest build-tsan -R "token_processes|token_tls|token_fork|token_sessions|token_failover|token_multihost"

echo "== valgrind memcheck, token suites and provider load/unload"
for t in token_keystore token_open token_processes token_tls token_selftest token_hkdf token_softokn_tls \
    unit_provider unit_app; do
    (cd build-test/tests && M2MHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so \
        valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --trace-children=no "./$t" > "../../build-test/valgrind-$t.log" 2>&1) \
        || { cat "build-test/valgrind-$t.log"; echo "valgrind: $t failed"; exit 1; }
    echo "valgrind $t: clean"
done
echo "== libFuzzer harnesses, ${FUZZ_SECONDS:-20} s each"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
echo "all test stages passed"
