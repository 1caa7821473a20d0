#!/usr/bin/env bash
# Install the Debian 12 packages m2mhsm builds, tests and demos with, and any extra ones
# named as arguments (scripts/soak-tests.sh: stress-ng). Idempotent; needs root (or sudo)
# only when something is missing.
set -euo pipefail

packages=(
    build-essential cmake pkg-config clang clang-format git
    libssl-dev openssl libp11-kit-dev p11-kit p11-kit-modules
    softhsm2 libsofthsm2 opensc gnutls-bin libnss3 libnss3-tools
    libcmocka-dev libjansson-dev libevent-dev libsystemd-dev systemd
    valgrind python3 xxd curl bc procps iproute2 ca-certificates haproxy
 "$@"
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# promtool, for `promtool check metrics` on the servers' metrics (tests/e2e/metrics.sh).
# Debian ships it only inside the `prometheus` package, which is the whole server: 96 MB
# installed, a dozen JavaScript packages, a system user, and a postinst that starts the
# daemon. So only promtool (one binary that needs nothing but libc) is taken from that
# package's .deb, fetched by apt, into /usr/local/bin.
install_promtool() {
    local tmp rc=0
    tmp=$(mktemp -d)
    (cd "$tmp" && $sudo apt-get download -qq -o APT::Sandbox::User=root prometheus) ||
        { $sudo apt-get update -qq && (cd "$tmp" && $sudo apt-get download -qq -o APT::Sandbox::User=root prometheus); } ||
        rc=$?
    if [ "$rc" = 0 ]; then
        dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool &&
            $sudo install -m 0755 "$tmp/usr/bin/promtool" /usr/local/bin/promtool || rc=$?
    fi
    $sudo rm -rf -- "$tmp"
    return "$rc"
}
command -v promtool > /dev/null || { echo "installing: promtool (from Debian's prometheus .deb)" >&2 && install_promtool; }
