#!/usr/bin/env bash
# What an application can reach, checked on the build's own outputs (tests/install/packages.sh
# repeats the export checks on the Debian packages):
#   - the provider module exports OSSL_provider_init and nothing else;
#   - the shared libm2mhsm exports exactly the functions the installed headers declare: the
#     list the version script is generated from (libm2mhsm.api), which must also be what a
#     compiler finds declared in those headers, and no ks_* or p11_* internals;
#   - no installed header names a PKCS#11 handle or the module's function list: records and
#     tokens are used through the API, never through this process's module handles;
#   - every installed header compiles on its own.
# Environment: M2M_BUILD (the build directory), M2MHSM_PROVIDER_MODULE, M2MHSM_SHARED_LIB.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/tests/common/checks.sh"
: "${M2M_BUILD:?}" "${M2MHSM_PROVIDER_MODULE:?}" "${M2MHSM_SHARED_LIB:?}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/m2mhsm-symbols.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

exports() { nm -D --defined-only "$1" | awk '{print $3}' | sort; }

# 1. The provider module.
exports "$M2MHSM_PROVIDER_MODULE" > "$WORK/provider.syms"
echo "# nm -D --defined-only $(basename "$M2MHSM_PROVIDER_MODULE"): $(tr '\n' ' ' < "$WORK/provider.syms")"
check "the provider module exports OSSL_provider_init and nothing else" \
    test "$(cat "$WORK/provider.syms")" = OSSL_provider_init

# 2. The headers as installed (the dev component, into a scratch prefix).
cmake --install "$M2M_BUILD" --component dev --prefix "$WORK/prefix" > "$WORK/install.log" 2>&1 ||
    { cat "$WORK/install.log"; exit 1; }
INC=$WORK/prefix/include
headers=$(cd "$INC" && ls m2mhsm/*.h)
check "the dev component installs the public headers (${headers//$'\n'/ })" test -n "$headers"
deps_cflags=$(pkg-config --cflags p11-kit-1 libssl libcrypto)

# 3. The library: its exports, the generated list, and what the headers declare.
API=$M2M_BUILD/libm2mhsm.api
sort "$API" > "$WORK/api"
exports "$M2MHSM_SHARED_LIB" > "$WORK/lib.syms"
echo "# libm2mhsm exports $(wc -l < "$WORK/lib.syms") symbols: $(head -5 "$WORK/lib.syms" | tr '\n' ' ')..."
check "libm2mhsm exports exactly the functions of libm2mhsm.api ($(wc -l < "$WORK/api"))" \
    diff -u "$WORK/api" "$WORK/lib.syms"
# A function declaration, to the compiler, is a name followed by its parameter list; a pointer
# to function (typedef ... (*m2mhsm_x)(...)), or the type it returns, is not one.
for h in $headers; do echo "#include <$h>"; done > "$WORK/all.c"
# shellcheck disable=SC2086
cc -E -P -I"$INC" $deps_cflags "$WORK/all.c" |
    perl -ne 'while (/(\(\s*\*\s*)?\b(m2mhsm_[a-z0-9_]+)\s*\((?!\s*\*)/g) { print "$2\n" unless $1 }' |
    sort -u > "$WORK/declared"
check "libm2mhsm.api lists every function the installed headers declare ($(wc -l < "$WORK/declared"))" \
    diff -u "$WORK/declared" "$WORK/api"
check "libm2mhsm exports no ks_* or p11_* internal" \
    bash -c "! grep -E '^(ks|p11)_' '$WORK/lib.syms'"
check "every symbol libm2mhsm exports is m2mhsm_*" \
    bash -c "! grep -v '^m2mhsm_' '$WORK/lib.syms'"

# 4. No handle of the module in the installed headers.
check "no installed header names CK_OBJECT_HANDLE, CK_SESSION_HANDLE or CK_FUNCTION_LIST" \
    bash -c "! grep -nwE 'CK_OBJECT_HANDLE|CK_SESSION_HANDLE|CK_FUNCTION_LIST(_PTR)?' '$INC'/m2mhsm/*.h"

# 5. Each header on its own, as a consumer includes it.
for h in $headers; do
    # shellcheck disable=SC2086
    check "<$h> compiles on its own" bash -c \
        "echo '#include <$h>' | cc -std=c11 -Wall -Wextra -Werror -fsyntax-only -I'$INC' $deps_cflags -x c -"
done

finish
