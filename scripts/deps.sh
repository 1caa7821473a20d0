#!/usr/bin/env bash
# Install the Debian 12 packages m2mhsm builds, tests and demos with, and any extra ones
# named as arguments (scripts/soak-tests.sh: stress-ng). Idempotent; needs root (or sudo)
# only when something is missing.
set -euo pipefail

packages=(
    build-essential cmake pkg-config clang clang-format git
    libssl-dev openssl libp11-kit-dev p11-kit libp11-dev
    softhsm2 libsofthsm2 opensc gnutls-bin
    libcmocka-dev libjansson-dev libevent-dev
    valgrind python3 xxd curl bc procps iproute2 ca-certificates
 "$@"
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
