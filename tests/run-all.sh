#!/usr/bin/env bash
# Runs every test suite, each printing "... N passed, N failed[, N skipped]"
# as its last line, and sums them into one closing line.
set -u
cd "$(dirname "$0")/.."
total_passed=0 total_failed=0 total_skipped=0 broken=()

run_suite() {
    local name=$1
    shift
    echo "=== $name"
    local log
    log=$(mktemp)
    "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    local summary
    summary=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    rm -f "$log"
    if [ -z "$summary" ]; then
        echo "suite $name printed no summary (exit $status)"
        broken+=("$name")
        return
    fi
    local p f s
    count() { grep -oE "[0-9]+ $1" <<<"$summary" | grep -oE '[0-9]+' || echo 0; }
    p=$(count passed)
    f=$(count failed)
    s=$(count skipped)
    total_passed=$((total_passed + p))
    total_failed=$((total_failed + f))
    total_skipped=$((total_skipped + ${s:-0}))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "suite $name exited $status"
        broken+=("$name")
    fi
}

run_suite unit build/tests/unit_tests
run_suite library tests/build/check-library.sh build/librstshim.so
run_suite shim python3 tests/shim/test_shim.py
run_suite scenario make --no-print-directory test-scenario
run_suite tool make --no-print-directory test-tool
run_suite hardening make --no-print-directory test-hardening
run_suite sanitize make --no-print-directory test-sanitize
run_suite servers make --no-print-directory test-servers
run_suite dist make --no-print-directory test-dist

echo
if [ ${#broken[@]} -gt 0 ]; then
    echo "broken suites: ${broken[*]}"
    total_failed=$((total_failed + ${#broken[@]}))
fi
echo "all: $total_passed passed, $total_failed failed, $total_skipped skipped"
[ "$total_failed" -eq 0 ]
