# Waiting for events (a log line, a count of them, a condition), each with an upper bound
# that only a broken run reaches. Polling is fine; deciding by how long something took is not.
# The short sleeps below are the polling interval between two looks at the event, never a
# wait that something is assumed to have happened in.

# wait_log FILE REGEX [SECONDS]: until a line of FILE matches (servers log asynchronously).
wait_log() {
    local file=$1 re=$2 t=${3:-30} i
    for ((i = 0; i < t * 20; i++)); do
        grep -q -E -- "$re" "$file" 2> /dev/null && return 0
        sleep 0.05
    done
    echo "# no line matching /$re/ in $file:" >&2; tail -5 "$file" >&2
    return 1
}

# wait_until SECONDS COMMAND...: until the command succeeds (re-evaluated by eval each time).
wait_until() {
    local t=$1 i; shift
    for ((i = 0; i < t * 4; i++)); do
        eval "$@" && return 0
        sleep 0.25
    done
    return 1
}

# count_log FILE REGEX: how many lines match.
count_log() { grep -c -E -- "$2" "$1" 2> /dev/null || true; }

# wait_count FILE REGEX N [SECONDS]: until at least N lines of FILE match.
wait_count() {
    local file=$1 re=$2 n=$3 t=${4:-30} i c
    for ((i = 0; i < t * 20; i++)); do
        c=$(count_log "$file" "$re")
        [ "${c:-0}" -ge "$n" ] && return 0
        sleep 0.05
    done
    echo "# fewer than $n lines matching /$re/ in $file:" >&2; tail -5 "$file" >&2
    return 1
}

