#!/usr/bin/env bash
# bench/profile.sh BINDIR SHIM [SECONDS] -- where the shim's time goes.
#
# For the churn and keep-alive servers (bench/srv.c), bare and under the shim
# with RSTSHIM_EVENTS=flagged and all:
#   1. strace -c -f on the server while `bench load` drives it: the syscalls
#      per operation, so the ones the shim adds stand out;
#   2. perf record -e cpu-clock (a software clock: works in VMs without PMU)
#      with DWARF call graphs on the running server; the report lists the
#      shim's functions with their share of the server's time, self and
#      with what they call (the kernel work of the probes they make).
#      Without a working perf, valgrind --tool=callgrind (user space only).
# Client and server are pinned to one CPU as in the bench; as root it all
# runs in a private network namespace.  Output: a summary on stdout, full
# reports in BINDIR/profile/.  Every process is ended by its pid.
set -u
BINDIR=$(realpath "$1")
SHIM=$(realpath "$2")
SECS=${3:-4}
OUT=$BINDIR/profile
CPU=$(($(nproc) - 1))

if [ "$(id -u)" = 0 ] && [ -z "${RSTSHIM_PROFILE_NS:-}" ] && command -v unshare >/dev/null; then
    exec env RSTSHIM_PROFILE_NS=1 unshare -n bash -c 'ip link set lo up && exec bash "$0" "$@"' \
        "$0" "$@"
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.jsonl

have_perf=
if command -v perf >/dev/null && perf record -e cpu-clock -o "$OUT/probe.data" -- true \
    >/dev/null 2>&1; then
    have_perf=1
fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; }
trap cleanup EXIT

# start_server MODE CFG PORT [WRAPPER...]: the server's pid in $SERVER_PID
start_server() {
    local mode=$1 cfg=$2 port=$3
    shift 3
    local ready=$OUT/ready.$$
    rm -f "$ready"
    local -a envs=(env -u LD_PRELOAD -u RSTSHIM_LOG -u RSTSHIM_EVENTS)
    if [ "$cfg" != bare ]; then
        envs+=(LD_PRELOAD="$SHIM" RSTSHIM_LOG="$OUT/$mode-$cfg.jsonl" RSTSHIM_EVENTS="$cfg")
    fi
    taskset -c "$CPU" "$@" "${envs[@]}" "$BINDIR/srv" "$mode" 3 "$port" 3>"$ready" &
    LAUNCH_PID=$!
    PIDS+=("$LAUNCH_PID")
    for _ in $(seq 100); do
        [ -s "$ready" ] && break
        sleep 0.05
    done
    SERVER_PID=$(cut -d' ' -f2 "$ready")
    PIDS+=("$SERVER_PID")
    rm -f "$ready"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null
    wait "$LAUNCH_PID" 2>/dev/null
}

load() { taskset -c "$CPU" "$BINDIR/bench" load "$1" "$2" "$3"; }

echo "== syscalls per operation (strace -c -f on the server; ops = connections or round trips;"
echo "   calls under 0.01/op left out)"
port=19000
for mode in churn keepalive; do
    for cfg in bare flagged all; do
        port=$((port + 1))
        start_server "$mode" "$cfg" "$port" strace -c -f -o "$OUT/strace-$mode-$cfg.txt"
        ops=$(load "$mode" "$port" 2 | awk '{print $1}')
        stop_server
        echo "-- $mode $cfg: $ops ops"
        awk -v ops="$ops" '
            $1 ~ /^[0-9.]+$/ && NF >= 5 {
                name = $NF; calls = $4
                if (NF == 6) errors = $5; else errors = 0
                if (calls / ops < 0.01) next
                note = (errors / ops >= 0.01) ? sprintf("  (%.2f/op failed)", errors / ops) : ""
                printf "   %-14s %6.2f/op%s\n", name, calls / ops, note
            }' "$OUT/strace-$mode-$cfg.txt"
    done
done

echo
cpu_ns() { awk '{print $1}' "/proc/$1/schedstat" 2>/dev/null || echo 0; }

# perf_report NAME: the object split and the shim's own cost of one recording
perf_report() {
    local data=$OUT/perf-$1.data
    perf report -i "$data" --no-children --sort dso --stdio 2>/dev/null >"$OUT/perf-$1.dso.txt"
    perf report -i "$data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
        >"$OUT/perf-$1.self.txt"
    echo "   time by object:"
    grep -E '^ +[0-9]' "$OUT/perf-$1.dso.txt" | head -5 | sed 's/^/   /'
    if command -v python3 >/dev/null; then
        perf script --no-inline -i "$data" -F comm,tid,ip,sym,dso 2>/dev/null |
            python3 "$(dirname "$0")/perf_attrib.py" "$SHIM"
    fi
}

if [ -n "$have_perf" ]; then
    echo "== perf record -e cpu-clock --call-graph dwarf on the server, ${SECS}s of load each"
    for mode in churn keepalive; do
        for cfg in bare flagged all; do
            port=$((port + 1))
            start_server "$mode" "$cfg" "$port"
            perf record -q -e cpu-clock -F 4000 --call-graph dwarf,16384 -p "$SERVER_PID" \
                -o "$OUT/perf-$mode-$cfg.data" >/dev/null 2>&1 &
            perf_pid=$!
            PIDS+=("$perf_pid")
            sleep 0.3
            c0=$(cpu_ns "$SERVER_PID")
            ops=$(load "$mode" "$port" "$SECS" | awk '{print $1}')
            c1=$(cpu_ns "$SERVER_PID")
            kill -INT "$perf_pid"
            wait "$perf_pid" 2>/dev/null
            stop_server
            echo "-- $mode $cfg: $ops ops in ${SECS}s, server CPU $(awk -v a="$c0" -v b="$c1" \
                -v n="$ops" 'BEGIN { printf "%.2f", (b - a) / 1000 / n }') us/op (under perf)"
            perf_report "$mode-$cfg"
        done
    done
    echo
    echo "== untracked fds: bench/fdops under the shim (flagged), ${SECS}s each"
    echo "a small file" >"$OUT/small-file.txt"
    for kind in F P; do
        name=fdops-$([ $kind = F ] && echo file || echo pipe)
        printf '%s %d\n' "$kind" "$((SECS * 1000000000))" |
            taskset -c "$CPU" perf record -q -e cpu-clock -F 4000 --call-graph dwarf,16384 \
                -o "$OUT/perf-$name.data" -- env LD_PRELOAD="$SHIM" RSTSHIM_EVENTS=flagged \
                RSTSHIM_LOG="$OUT/$name.jsonl" "$BINDIR/fdops" "$OUT/small-file.txt" \
                >"$OUT/$name.out" 2>/dev/null
        echo "-- $name: $(awk '{printf "%d ops, %.1f ns/op", $1, $2 / $1}' "$OUT/$name.out")"
        perf_report "$name"
    done
elif command -v valgrind >/dev/null; then
    echo "== perf does not work here: valgrind --tool=callgrind (user-space instructions only)"
    for mode in churn keepalive; do
        cfg=all
        port=$((port + 1))
        start_server "$mode" "$cfg" "$port" valgrind --tool=callgrind --trace-children=yes \
            --callgrind-out-file="$OUT/callgrind-$mode-$cfg.out"
        sleep 1
        load "$mode" "$port" 2 >/dev/null
        stop_server
        callgrind_annotate --inclusive=yes "$OUT/callgrind-$mode-$cfg.out" 2>/dev/null |
            head -40 | sed 's/^/   /'
    done
else
    echo "== neither perf nor valgrind works here: no profile"
fi
rm -f "$OUT"/*.jsonl
