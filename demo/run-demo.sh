#!/usr/bin/env bash
# demo/run-demo.sh -- `make demo`: reproduce each way a server makes its
# peer see an RST, under the shim, and show the client's view, the shim's
# flagged lines, a verdict and the fix.  Exits non-zero when a scenario does
# not show what it must.
#
#   bash demo/run-demo.sh [--keep-logs DIR] [SCENARIO...]
#
# SCENARIO is a name (immediate mismatch timeout linger pending emfile
# overload correct) or its number 1..8; default: all.  --keep-logs copies
# each scenario's log to DIR/NAME.log (the tool tests use it).
#
# Every process started here is tracked by pid and ended by pid; every wait
# is a bounded loop.  Servers listen on 127.0.0.1 only.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIB=$ROOT/build/librstshim.so
SERVERS=$ROOT/build/demo/servers
CLIENTS=$ROOT/build/demo/clients
TOOL=$ROOT/build/rstshim
ALL=(immediate mismatch timeout linger pending emfile overload correct)

keep=""
chosen=()
while [ $# -gt 0 ]; do
    case $1 in
    --keep-logs) keep=${2:?--keep-logs needs a directory}; shift 2 ;;
    [1-8]) chosen+=("${ALL[$(($1 - 1))]}"); shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) chosen+=("$1"); shift ;;
    esac
done
[ ${#chosen[@]} -gt 0 ] || chosen=("${ALL[@]}")

for f in "$LIB" "$SERVERS" "$CLIENTS"; do
    if [ ! -e "$f" ]; then
        echo "demo: $f is missing: run 'make demo' from the repository root" >&2
        exit 2
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rstshim-demo.XXXXXX")
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%3N; }

# wait_gone PID SECONDS: wait for PID to exit (polling, bounded), then end it
# by pid (TERM, then KILL) if it is still there.  Returns 0 if it ended alone.
wait_gone() {
    local pid=$1 tries=$(($2 * 20)) i
    for ((i = 0; i < tries; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.05
    done
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 1
}

# ---- reading the log: tolerant of spaces, one line at a time -------------

re_event() { printf '"event": ?"%s"' "$1"; }
re_flag() { printf '"flags": ?\\[[^]]*"%s"' "$1"; }
RE_FLAGGED='"flags": ?\[ ?"'
RE_ERRORS='"event": ?"(accept_error|peer_reset|config_error|exec_failed)"'
RE_RST_CAUSE='"flags": ?\[[^]]*"(unread_data|linger_zero|immediate_close|recv_timeout|pending_connections)"'

# has_line LOG RE...: some line of LOG matches every RE.
has_line() {
    local log=$1 line re ok
    shift
    while IFS= read -r line; do
        ok=1
        for re in "$@"; do
            [[ $line =~ $re ]] || { ok=0; break; }
        done
        [ $ok = 1 ] && return 0
    done <"$log"
    return 1
}

# The lines a user should look at: flagged ones and the error events
# (what RSTSHIM_EVENTS=flagged keeps), minus fields that only add width.
show_flagged() {
    local log=$1 extra=${2:-} line n=0
    while IFS= read -r line; do
        if [[ $line =~ $RE_FLAGGED || $line =~ $RE_ERRORS ]] ||
            { [ -n "$extra" ] && [[ $line =~ $extra ]]; }; then
            line=$(sed -E 's/"(mono_ns|tid|cookie)": ?[0-9]+, ?//g; s/"(ts|comm)": ?"[^"]*", ?//g' <<<"$line")
            echo "  $line"
            n=$((n + 1))
        fi
    done <"$log"
    [ $n -gt 0 ] || echo "  (no flagged line)"
}

# ---- one scenario --------------------------------------------------------

# run_scenario NAME: start the server under the shim, run the client, wait
# for the server to finish.  Leaves $WORK/NAME.{log,client,server}.
run_scenario() {
    local name=$1 log=$WORK/$1.log sout=$WORK/$1.server cout=$WORK/$1.client
    local spid cpid port="" i
    : >"$log"
    env LD_PRELOAD="$LIB" RSTSHIM_LOG="$log" "$SERVERS" "$name" >"$sout" 2>&1 &
    spid=$!
    PIDS+=("$spid")
    for ((i = 0; i < 100; i++)); do
        port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$sout")
        [ -n "$port" ] && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "  (server did not start: $(tr '\n' ' ' <"$sout"))" >"$cout"
        wait_gone "$spid" 1
        return 1
    fi
    "$CLIENTS" "$name" "$port" >"$cout" 2>&1 &
    cpid=$!
    PIDS+=("$cpid")
    wait_gone "$cpid" 8 || echo "  (client did not finish in 8 s: stopped)" >>"$cout"
    wait_gone "$spid" 5 || echo "  (server did not finish in 5 s: stopped)" >>"$sout"
    [ -n "$keep" ] && cp "$log" "$keep/$name.log"
    return 0
}

# ---- what each scenario must show ----------------------------------------

# check_NAME LOG: prints what was expected; returns non-zero if not shown.
check_immediate() {
    echo "close flagged immediate_close, rst:false (FIN now, RST on the client's next send)"
    has_line "$1" "$(re_event close)" "$(re_flag immediate_close)" '"rst": ?false'
}
check_mismatch() {
    echo "close flagged unread_data, rst:true"
    has_line "$1" "$(re_event close)" "$(re_flag unread_data)" '"rst": ?true'
}
check_timeout() {
    echo "close flagged recv_timeout, rst:false"
    has_line "$1" "$(re_event close)" "$(re_flag recv_timeout)" '"rst": ?false'
}
check_linger() {
    echo "setsockopt flagged linger_zero, then close flagged linger_zero, rst:true"
    has_line "$1" "$(re_event setsockopt)" "$(re_flag linger_zero)" &&
        has_line "$1" "$(re_event close)" "$(re_flag linger_zero)" '"rst": ?true'
}
check_pending() {
    echo "listener close flagged pending_connections, pending 3, rst:true"
    has_line "$1" "$(re_event close)" '"role": ?"listener"' "$(re_flag pending_connections)" \
        '"pending": ?3[,}]' '"rst": ?true'
}
check_emfile() {
    echo "accept_error with errno EMFILE"
    has_line "$1" "$(re_event accept_error)" '"errno": ?"EMFILE"'
}
check_overload() {
    echo "listen with backlog 1, no RST cause flagged, kernel ListenOverflows moved"
    has_line "$1" "$(re_event listen)" '"backlog": ?1[,}]' &&
        ! has_line "$1" "$RE_RST_CAUSE" &&
        grep -Eq 'ListenOverflows \+[1-9]' "$WORK/overload.client"
}
check_correct() {
    echo "an accepted close with rst:false, and no flagged line at all"
    has_line "$1" "$(re_event close)" '"role": ?"accepted"' '"rst": ?false' &&
        ! has_line "$1" "$RE_FLAGGED" && ! has_line "$1" "$RE_ERRORS"
}

# ---- narration -----------------------------------------------------------

declare -A TITLE VERDICT FIX EXTRA
TITLE[immediate]="accept, then close at once"
VERDICT[immediate]="The server closed right after accept without reading: a FIN went out, and the client's next send was answered by an RST (its later send fails: Broken pipe)."
FIX[immediate]="Don't accept just to close: reply with an error first, or stop accepting (pause the listener, lower the backlog) while over capacity."

TITLE[mismatch]="protocol mismatch: close with unread data"
VERDICT[mismatch]="The server read 4 bytes, saw the wrong protocol and closed with 26 bytes unread: the kernel sent RST instead of FIN (the client got the error line, then ECONNRESET)."
FIX[mismatch]="Drain before close: shutdown(SHUT_WR), read to EOF with a short deadline, then close."

TITLE[timeout]="SO_RCVTIMEO 100 ms, slow client"
VERDICT[timeout]="recv() timed out, the server closed with a FIN; the slow client's rest of request drew an RST."
FIX[timeout]="Use a timeout longer than the client's pauses, or reply with an error (408) before closing."

TITLE[linger]="SO_LINGER {1,0} fast close after the reply"
VERDICT[linger]="SO_LINGER {1,0} made close() abortive: the reply arrived, then an RST instead of FIN (ECONNRESET)."
FIX[linger]="Drop linger 0; if TIME_WAIT is the worry, let the client close first or use tcp_tw_reuse."

TITLE[pending]="listener closed with connections queued"
VERDICT[pending]="The listener was closed with 3 handshaken, never-accepted connections in its queue: each got an RST."
FIX[pending]="Shut down gracefully: accept and answer what is queued before closing the listener, or hand it over (SO_REUSEPORT, socket activation)."

TITLE[emfile]="RLIMIT_NOFILE too low: accept fails with EMFILE"
VERDICT[emfile]="accept() failed with EMFILE: the clients stayed queued with no answer while the loop spun; when the server gave up, closing the listener reset them."
FIX[emfile]="Raise the limit (ulimit -n, systemd LimitNOFILE=), and back off on EMFILE instead of spinning."

TITLE[overload]="thread-per-connection overload, backlog 1"
VERDICT[overload]="Overload with a small backlog sends no RST: the full accept queue made the kernel drop SYNs (ListenOverflows), clients waited for SYN retries (1 s, 3 s); the shim has nothing to flag, its listen line shows the backlog."
FIX[overload]="Raise the backlog (listen(fd, 4096), net.core.somaxconn), keep accepting while workers are busy (queue the work), add capacity."
EXTRA[overload]='"event": ?"listen"'

TITLE[correct]="a correct server, for contrast"
VERDICT[correct]="Whole request read, reply sent, shutdown(SHUT_WR), drained to EOF, closed: FIN only, nothing flagged."
FIX[correct]="Nothing to fix."

# ---- main ----------------------------------------------------------------

[ -n "$keep" ] && mkdir -p "$keep"
start=$(now_ms)
passed=0
failed=0
n=0
for name in "${chosen[@]}"; do
    n=$((n + 1))
    if [ -z "${TITLE[$name]:-}" ]; then
        echo "demo: unknown scenario '$name' (one of: ${ALL[*]})" >&2
        failed=$((failed + 1))
        continue
    fi
    num=0
    for i in "${!ALL[@]}"; do [ "${ALL[$i]}" = "$name" ] && num=$((i + 1)); done
    echo "=== $num/8 $name: ${TITLE[$name]}"
    t0=$(now_ms)
    run_scenario "$name"
    echo "what the client saw:"
    grep -v '^PORT ' "$WORK/$name.client"
    echo "what the server said:"
    grep -v '^PORT ' "$WORK/$name.server"
    echo "rstshim (flagged lines; ts, mono_ns, tid, comm, cookie left out):"
    show_flagged "$WORK/$name.log" "${EXTRA[$name]:-}"
    echo "verdict: ${VERDICT[$name]}"
    echo "fix: ${FIX[$name]}"
    expected=$("check_$name" "$WORK/$name.log")
    if [ $? -eq 0 ]; then
        echo "check: PASS - $expected ($(( $(now_ms) - t0 )) ms)"
        passed=$((passed + 1))
    else
        echo "check: FAIL - expected: $expected; the log:"
        sed 's/^/    /' "$WORK/$name.log"
        failed=$((failed + 1))
    fi
    echo
done

if [ -x "$TOOL" ] && [ ${#chosen[@]} -gt 1 ]; then
    echo "=== all scenario logs through: rstshim report"
    "$TOOL" report --top 5 "$WORK"/*.log | sed 's/^/  /'
    echo
fi

total_ms=$(( $(now_ms) - start ))
printf 'demo: %d scenarios, %d showed what they should, %d did not (%d.%d s)\n' \
    "$n" "$passed" "$failed" $((total_ms / 1000)) $((total_ms % 1000 / 100))
[ "$failed" -eq 0 ]
