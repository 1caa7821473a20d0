#!/usr/bin/env bash
# hsm-config/softhsm-conf.sh DIR: a SoftHSM configuration DIR/softhsm2.conf (mode 0600) from
# softhsm2.conf.in, with its tokens in DIR/tokens. The one writer of SoftHSM configurations:
# lab.sh, make-token.sh, the test scripts, the cmocka fixture and the benchmarks use it.
set -euo pipefail
dir=${1:?usage: softhsm-conf.sh DIR}
[[ $dir == /* ]] || dir=$(pwd)/$dir
[[ $dir != *'|'* && $dir != *$'\n'* ]] || { echo "softhsm-conf.sh: unusable directory name" >&2; exit 2; }
umask 077
mkdir -p -- "$dir/tokens"
sed "s|@TOKEN_DIR@|$dir/tokens|" "$(dirname "${BASH_SOURCE[0]}")/softhsm2.conf.in" > "$dir/softhsm2.conf"
