#!/usr/bin/env bash
# Makes sure what the build and the tests need is installed: installs it when
# run as root (Debian), otherwise prints the exact apt-get line and fails.
# Usage: scripts/ensure-deps.sh build|test
set -u
need=()
have_header() { [ -e "/usr/include/$1" ] || [ -e "/usr/include/x86_64-linux-gnu/$1" ]; }
have_lib() { compgen -G "/usr/lib/*/$1" >/dev/null || [ -e "/usr/lib/$1" ]; }

command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
{ have_header jansson.h && have_lib libjansson.a; } || need+=(libjansson-dev)
have_header pcap/pcap.h || need+=(libpcap-dev)
if [ "${1:-build}" = test ]; then
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    command -v unshare >/dev/null 2>&1 || need+=(util-linux)
    command -v nm >/dev/null 2>&1 || need+=(binutils)
    command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "rstshim: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; } >&2 || {
        echo "rstshim: apt-get install ${need[*]} failed" >&2
        exit 1
    }
    exit 0
fi
echo "rstshim: missing ${need[*]}; install them with:" >&2
echo "    sudo apt-get install -y ${need[*]}" >&2
exit 1
