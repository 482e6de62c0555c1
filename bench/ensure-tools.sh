#!/usr/bin/env bash
# What `make bench` runs besides its own programs: nginx (the real-server row)
# and wrk (its cross-check), from Debian's packages.  As root, installs what
# is missing without starting any service; otherwise says what is missing and
# the bench prints SKIP rows.  Never fails: the bench reports, it does not gate.
set -u
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v strace >/dev/null 2>&1 || need+=(strace)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "bench: missing ${need[*]} (not root: those rows are skipped); to install:" >&2
    echo "    sudo apt-get install -y ${need[*]}" >&2
    exit 0
fi

# Installing nginx must not start Debian's nginx service (port 80 on every
# address): a policy-rc.d that forbids starts, only for this install.
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && made_policy=1
fi
echo "bench: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
{ apt-get install -y -q --no-install-recommends "${need[@]}" ||
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; }; } \
    >/dev/null 2>&1 || echo "bench: apt-get install ${need[*]} failed; those rows are skipped" >&2
[ -n "$made_policy" ] && rm -f "$policy"
exit 0
