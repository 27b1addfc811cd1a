#!/bin/sh
# tools/setup.sh - installs the Debian packages atomq needs to build and test.
#
#   sh tools/setup.sh           # as root: apt-get installs what is missing
#   sh tools/setup.sh --print   # print the package list and exit
#
# As a non-root user it installs nothing and prints the one apt-get line to
# run instead (exit 1 when something is missing, 0 when all is there).
set -eu

# One package a line, with the reason; the issues that add a dependency add
# it here.
PACKAGES="
meson            build
ninja-build      build
pkg-config       build
gcc              build
liburing-dev     io_uring (network and disk backends)
libnuma-dev      NUMA placement of the arena
libxxhash-dev    name and subject hashes
libinih-dev      atomqd's config file
libjansson-dev   JSON replies read by tools and tests
libedit-dev      atomqctl's interactive prompt
libcriterion-dev unit tests
python3          test helpers
golang-go        NATS client tests (nats.go)
golang-github-nats-io-go-nats-dev NATS client tests (nats.go sources)
nats-server      reference NATS server for tests and benchmarks
clang            libFuzzer targets (make fuzz, and briefly in make test)
libclang-rt-dev  libFuzzer and clang's sanitizer runtimes
dpdk-dev         kernel bypass (DPDK NIC backend)
iproute2         DPDK backend test: network namespace and veth pair
iputils-ping     DPDK backend test: ping answered by the backend
ethtool          DPDK backend test: veth checksum offload off
"

names=$(printf '%s\n' "$PACKAGES" | awk 'NF { print $1 }')

if [ "${1:-}" = "--print" ]; then
        echo $names
        exit 0
fi

missing=""
for p in $names; do
        # dpkg-query prints "install ok installed" only for a complete install.
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case "$status" in
        "install ok installed") ;;
        *) missing="$missing $p" ;;
        esac
done

if [ -z "$missing" ]; then
        exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
        echo "atomq: missing Debian packages. Run as root:" >&2
        echo "  apt-get update && apt-get install -y$missing" >&2
        exit 1
fi

echo "atomq: installing missing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # the list is words on purpose
apt-get install -y -qq --no-install-recommends $missing
