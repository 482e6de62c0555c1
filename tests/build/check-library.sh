#!/usr/bin/env bash
# Checks the built library itself: it exports exactly the interposed calls
# (nothing of our own internals), and needs nothing but glibc,
# so it can be copied alone into any glibc container.
set -u
lib=${1:-build/librstshim.so}
passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

expected=$(sed 's,/\*.*\*/,,; /^\s*\*/d; /^\/\*/d' shim/exports.map | grep -oE '[A-Za-z_0-9]+;' | tr -d ';' | sort)
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TWiV]$/ {print $3}' | sed 's/@.*//' | sort)
if [ "$expected" = "$exported" ]; then
    pass "exports exactly the $(echo "$expected" | wc -l) interposed calls"
else
    fail "exports" "$(diff <(echo "$expected") <(echo "$exported") | tr '\n' ' ')"
fi

# No JSON library symbols may leak out to clash with a host's own jansson.
if nm -D "$lib" | grep -qiE ' json_|jansson'; then
    fail "no JSON library symbols exported" "$(nm -D "$lib" | grep -iE ' json_' | head -3 | tr '\n' ' ')"
else
    pass "no JSON library symbols exported"
fi

needed=$(objdump -p "$lib" | awk '/NEEDED/ {print $2}' | sort | tr '\n' ' ')
case "$needed" in
    "libc.so.6 " | "libc.so.6 libdl.so.2 " | "ld-linux-x86-64.so.2 libc.so.6 ") pass "needs only glibc ($needed)" ;;
    *) fail "needs only glibc" "NEEDED: $needed" ;;
esac
if ldd "$lib" | grep -q 'not found\|jansson'; then
    fail "ldd" "$(ldd "$lib" | tr '\n' ' ')"
else
    pass "ldd resolves with glibc alone"
fi

# The library must not carry an executable stack or text relocations.
if readelf -lW "$lib" | grep -q 'GNU_STACK.*RWE'; then
    fail "no executable stack" "GNU_STACK is RWE"
else
    pass "no executable stack"
fi
if readelf -dW "$lib" | grep -q TEXTREL; then
    fail "no text relocations" "TEXTREL present"
else
    pass "no text relocations"
fi

# The wrappers on every file and pipe call (SHIM_EXPORT_HOT) must each lie
# within one 4 KiB page: a fast path that crosses one costs an extra TLB miss
# after every syscall on a kernel without PCID (include/guard.h).
hot=$(grep -ohE 'SHIM_EXPORT_HOT [^(]*\b[A-Za-z_0-9]+\(' shim/*.c | grep -oE '[A-Za-z_0-9]+\($' | tr -d '(' | sort -u)
crossing=""
for name in $hot; do
    read -r start size < <(nm -S --defined-only "$lib" | awk -v n="$name" '$4 == n && $3 == "T" {print $1, $2; exit}')
    if [ -z "${start:-}" ]; then
        crossing+="$name(missing) "
        continue
    fi
    first=$((16#$start)) last=$((16#$start + 16#$size - 1))
    [ $((first / 4096)) -eq $((last / 4096)) ] || crossing+="$name($start+$size) "
    start=""
done
# Every SHIM_EXPORT_HOT definition must have given a name above (one whose
# name sits on the next line would otherwise drop out unchecked).
marked=$(grep -ohE '^SHIM_EXPORT_HOT ' shim/*.c | wc -l)
[ "$(echo "$hot" | wc -w)" -eq "$marked" ] || crossing+="(names found: $(echo $hot | wc -w), SHIM_EXPORT_HOT definitions: $marked) "
if [ -n "$hot" ] && [ -z "$crossing" ]; then
    pass "the $(echo "$hot" | wc -w) hot wrappers each lie within one 4 KiB page"
else
    fail "hot wrappers within one page" "${crossing:-none found}"
fi

echo "build: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
