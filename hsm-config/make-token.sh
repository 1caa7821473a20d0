#!/usr/bin/env bash
# Make a throwaway SoftHSM token for m2mhsm: DIR gets softhsm2.conf, tokens/, and random
# 0600 PIN files so==so.pin, user==user.pin. Prints the environment to use it.
#   hsm-config/make-token.sh DIR LABEL [M2MHSM-BINARY]
set -euo pipefail
dir=$1 label=$2 bin=${3:-$(dirname "$0")/../build/src/apps/m2mhsm}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bash "$(dirname "$0")/softhsm-conf.sh" "$dir"
(umask 077
 [ -f "$dir/so.pin" ] || openssl rand -hex 12 > "$dir/so.pin"
 [ -f "$dir/user.pin" ] || openssl rand -hex 12 > "$dir/user.pin")
SOFTHSM2_CONF="$dir/softhsm2.conf" "$bin" --pin-source "file:$dir/user.pin" \
    token-init --label "$label" --so-pin-source "file:$dir/so.pin" >&2
cat <<ENV
export SOFTHSM2_CONF='$dir/softhsm2.conf'
export M2MHSM_TOKEN='pkcs11:token=$label'
export M2MHSM_PIN_SOURCE='file:$dir/user.pin'
export M2MHSM_LOCK_FILE='$dir/m2mhsm.lock'
ENV
