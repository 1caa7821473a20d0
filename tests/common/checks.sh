# TAP-like assertions shared by the interop and e2e scripts: . checks.sh; check ...; finish
failures=0
checks=0

# check DESCRIPTION COMMAND...: the command must succeed.
check() {
    local what=$1; shift
    checks=$((checks + 1))
    if "$@"; then echo "ok - $what"; else echo "not ok - $what"; failures=$((failures + 1)); fi
}

# refuse DESCRIPTION COMMAND...: the command must fail.
refuse() {
    local what=$1; shift
    checks=$((checks + 1))
    if "$@" >/dev/null 2>&1; then echo "not ok - $what"; failures=$((failures + 1)); else echo "ok - $what"; fi
}

finish() {
    echo "$((checks - failures)) passed, $failures failed"
    [ "$failures" -eq 0 ]
}
