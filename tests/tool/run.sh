#!/usr/bin/env bash
# tests/tool/run.sh -- tests of the rstshim command and of `make demo`.
# Prints PASS/FAIL/SKIP per check and "N passed, N failed, N skipped";
# exits non-zero on failure.  Arguments select checks by name substring.
set -u
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v python3 >/dev/null 2>&1; then
    echo "FAIL tool tests: python3 is needed (apt-get install python3)"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
exec python3 "$here/test_tool.py" "$@"
