#!/usr/bin/env bash
# dist/test_dist.sh [TARBALL] -- the `make dist` tarball, unpacked into an
# empty directory, must work where no jansson library is visible:
#
#   contents     the files, modes, version; the library needs libc.so.6 alone
#   no_jansson   inside a fresh mount namespace (unshare -m) every directory
#                holding a libjansson* is replaced by a copy of itself without
#                them (a bind mount of a symlink farm); a small C server runs
#                with the unpacked library in LD_PRELOAD, then under the
#                unpacked bin/rstshim (which must find ../lib/rstshim itself);
#                each log must hold the close that reset the client
#   glibc_only   a chroot holding only the loader, libc and the server, the
#                library named in its /etc/ld.so.preload: an image with glibc
#                alone (the README's whole-host recipe, inside a chroot)
#
# Root needed for no_jansson and glibc_only (SKIP otherwise).  Prints
# PASS/FAIL/SKIP per check and "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
TAR=${1:-}
passed=0 failed=0 skipped=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skip() { echo "SKIP $1: $2"; skipped=$((skipped + 1)); }
finish() {
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
    exit
}

if [ -z "$TAR" ]; then
    TAR=$(ls -t build/rstshim-*.tar.gz 2>/dev/null | head -n 1)
fi
if [ -z "$TAR" ] || [ ! -f "$TAR" ]; then
    fail contents "no tarball (run make dist)"
    skip no_jansson "no tarball"
    skip glibc_only "no tarball"
    finish
fi
TAR=$(realpath "$TAR")
NAME=$(basename "$TAR" .tar.gz)          # rstshim-VERSION
VERSION=${NAME#rstshim-}

WORK=$(mktemp -d /tmp/rstshim-dist.XXXXXX)
cleanup() {
    # only our own directory; mounts lived in namespaces that are gone
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- contents
UNPACK=$WORK/unpacked
mkdir "$UNPACK"
T=$UNPACK/$NAME
LIB=$T/lib/rstshim/librstshim.so
check_contents() {
    local want got why=""
    want=$(printf '%s\n' "$NAME/" "$NAME/README" "$NAME/bin/" "$NAME/bin/rstshim" "$NAME/lib/" \
        "$NAME/lib/rstshim/" "$NAME/lib/rstshim/librstshim.so" "$NAME/share/" "$NAME/share/man/" \
        "$NAME/share/man/man1/" "$NAME/share/man/man1/rstshim.1" | sort)
    got=$(tar -tzf "$TAR" | sort)
    [ "$want" = "$got" ] || why="tarball lists: $(echo $got)"
    tar -xzf "$TAR" -C "$UNPACK" || why="$why; tar -x failed"
    [ -x "$T/bin/rstshim" ] || why="$why; bin/rstshim not executable"
    [ -f "$LIB" ] || why="$why; no lib/rstshim/librstshim.so"
    local needed
    needed=$(readelf -d "$LIB" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    [ "$needed" = "libc.so.6 " ] || why="$why; librstshim.so NEEDED: '$needed', expected libc.so.6 alone"
    if readelf --dyn-syms -W "$LIB" | awk '$7 != "UND"' | grep -q ' json_'; then
        why="$why; librstshim.so exports jansson symbols"
    fi
    local ver
    ver=$("$T/bin/rstshim" --version 2>&1)
    [ "$ver" = "rstshim $VERSION" ] || why="$why; bin/rstshim --version says '$ver'"
    grep -q "rstshim $VERSION" "$T/README" || why="$why; README does not name $VERSION"
    grep -q '@' "$T/README" && why="$why; README has an unsubstituted @...@"
    if [ -n "$why" ]; then fail contents "${why#; }"; else pass contents; fi
}
check_contents

if [ "$(id -u)" -ne 0 ]; then
    skip no_jansson "needs root (unshare -m, bind mounts)"
    skip glibc_only "needs root (chroot)"
    finish
fi
if [ ! -f "$LIB" ]; then
    skip no_jansson "nothing unpacked"
    skip glibc_only "nothing unpacked"
    finish
fi
for tool in unshare mount gcc python3 timeout chroot ldd readelf; do
    if ! command -v "$tool" >/dev/null; then
        skip no_jansson "$tool missing"
        skip glibc_only "$tool missing"
        finish
    fi
done

# A server of our own: one connection, reads 4 bytes, closes with 96 unread.
cat > "$WORK/srv.c" <<'C'
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    if (l < 0 || bind(l, (void *)&a, sizeof a) || listen(l, 4) || getsockname(l, (void *)&a, &n))
        return 2;
    printf("PORT %d\n", ntohs(a.sin_port));
    fflush(stdout);
    struct pollfd p = {l, POLLIN, 0};
    if (poll(&p, 1, 10000) != 1)
        return 3;
    int c = accept(l, NULL, NULL);
    if (c < 0)
        return 4;
    char b[4];
    size_t got = 0;
    while (got < sizeof b) {
        p.fd = c;
        if (poll(&p, 1, 5000) != 1)
            return 5;
        ssize_t r = read(c, b + got, sizeof b - got);
        if (r <= 0)
            return 6;
        got += (size_t)r;
    }
    for (int i = 0; i < 500; i++) { /* bounded: the rest must be queued */
        int q = 0;
        if (ioctl(c, FIONREAD, &q) == 0 && q >= 96)
            break;
        usleep(1000);
    }
    close(c);
    close(l);
    return 0;
}
C
if ! gcc -O2 -o "$WORK/srv" "$WORK/srv.c" 2>"$WORK/gcc.err"; then
    fail no_jansson "cannot build the test server: $(head -c 300 "$WORK/gcc.err")"
    skip glibc_only "no test server"
    finish
fi

# The client (run by the server's side of each check): connect to the port the
# server printed, send 100 bytes in one write, wait for the server to exit.
cat > "$WORK/client.py" <<'PY'
import json, os, socket, sys, time
portfile, logdir = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 10
port = None
while port is None and time.monotonic() < deadline:
    try:
        with open(portfile) as f:
            words = f.read().split()
        if len(words) == 2 and words[0] == "PORT":
            port = int(words[1])
    except OSError:
        pass
    if port is None:
        time.sleep(0.01)
if port is None:
    sys.exit("client: the server printed no port")
c = socket.create_connection(("127.0.0.1", port), timeout=5)
me = "127.0.0.1:%d" % c.getsockname()[1]
c.sendall(b"PING" + b"x" * 96)
how = "EOF"
try:
    while c.recv(100):
        pass
except ConnectionResetError:
    how = "ECONNRESET"
c.close()
if how != "ECONNRESET":
    sys.exit("client: expected ECONNRESET, got %s" % how)
# the log must hold the close that reset us
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    lines = []
    for name in os.listdir(logdir):
        with open(os.path.join(logdir, name)) as f:
            lines += [json.loads(l) for l in f if l.strip()]
    hit = [o for o in lines if o.get("event") == "close" and o.get("peer") == me
           and o.get("flags") == ["unread_data"] and o.get("rst") is True
           and o.get("unread_bytes") == 96 and o.get("role") == "accepted"]
    if hit:
        print(json.dumps(hit[0], separators=(",", ":")))
        sys.exit(0)
    time.sleep(0.05)
sys.exit("client: no close line with unread_data, rst true for %s in %s" % (me, lines))
PY

# ------------------------------------------------------------- no_jansson
# Runs inside `unshare -m`: hide jansson, prove it is hidden, run the server
# twice (LD_PRELOAD, then bin/rstshim) and check each log.
cat > "$WORK/inside.sh" <<'SH'
set -u
WORK=$1 T=$2 ROOT=$3
mount --make-rprivate / || exit 10
dirs=$( { ldconfig -p 2>/dev/null | grep -o '/[^ ]*libjansson[^ ]*'
          ls -d /usr/lib*/libjansson* /usr/lib*/*/libjansson* /lib*/libjansson* /lib*/*/libjansson* \
                /usr/local/lib*/libjansson* /usr/local/lib*/*/libjansson* 2>/dev/null; } \
        | xargs -r -n1 dirname | xargs -r -n1 realpath | sort -u)
i=0
for d in $dirs; do
    i=$((i + 1))
    orig=$WORK/orig$i farm=$WORK/farm$i
    mkdir -p "$orig" "$farm"
    mount --bind "$d" "$orig" || exit 11
    # a farm of symlinks to everything in $d but jansson, mounted over $d
    (cd "$orig" && ls -A | grep -v '^libjansson' | sed "s|^|$orig/|" | xargs -r -d '\n' ln -s -t "$farm") \
        || exit 12
    mount --bind "$farm" "$d" || exit 12
done
left=$(ls -d /usr/lib*/libjansson* /usr/lib*/*/libjansson* /lib*/libjansson* /lib*/*/libjansson* \
             /usr/local/lib*/libjansson* /usr/local/lib*/*/libjansson* 2>/dev/null)
[ -z "$left" ] || { echo "jansson still visible: $left"; exit 13; }
if python3 -c 'import ctypes; ctypes.CDLL("libjansson.so.4")' 2>/dev/null; then
    echo "libjansson.so.4 still loads"; exit 14
fi
echo "hidden in: $dirs"
run() {  # run NAME CMD...: the server under the shim, the client against it
    local name=$1; shift
    local logs=$WORK/logs-$name
    mkdir -p "$logs"
    timeout 20 env -u RSTSHIM_EVENTS "$@" > "$WORK/port-$name" 2> "$WORK/err-$name" &
    local pid=$!
    local line
    if ! line=$(timeout 20 python3 "$WORK/client.py" "$WORK/port-$name" "$logs" 2>&1); then
        kill "$pid" 2>/dev/null
        wait "$pid"
        echo "$name: $line (server stderr: $(head -c 300 "$WORK/err-$name"))"
        return 1
    fi
    wait "$pid" || { echo "$name: server exited $? ($(head -c 300 "$WORK/err-$name"))"; return 1; }
    echo "$name: $line"
}
run preload env LD_PRELOAD="$T/lib/rstshim/librstshim.so" RSTSHIM_LOG="$WORK/logs-preload/%p.jsonl" \
    "$WORK/srv" || exit 15
run command "$T/bin/rstshim" -o "$WORK/logs-command/%p.jsonl" -- "$WORK/srv" || exit 16
exit 0
SH
# control: jansson does load here, outside the namespace (when installed)
control=""
if ls /usr/lib/*/libjansson.so.4 /lib/*/libjansson.so.4 >/dev/null 2>&1; then
    python3 -c 'import ctypes; ctypes.CDLL("libjansson.so.4")' 2>/dev/null \
        && control=" (outside the namespace libjansson.so.4 loads)"
fi
out=$(timeout 60 unshare -m bash "$WORK/inside.sh" "$WORK" "$T" "$ROOT" 2>&1)
rc=$?
if [ $rc -eq 0 ]; then
    pass no_jansson
    [ -n "$control" ] && echo "#  $control"
    printf '%s\n' "$out" | sed 's/^/#   /'
else
    fail no_jansson "exit $rc: $(printf '%s' "$out" | tr '\n' ' ' | head -c 800)"
fi

# ------------------------------------------------------------- glibc_only
CH=$WORK/chroot
mkdir -p "$CH/logs" "$CH/etc" "$CH/opt"
copy_in() {  # the file a path names, at the same path inside the chroot
    local p=$1
    mkdir -p "$CH$(dirname "$p")"
    cp -L "$p" "$CH$p"
}
libs=$( { ldd "$WORK/srv"; ldd "$LIB"; } | grep -o '/[^ ]*' | sort -u)
for p in $libs; do copy_in "$p"; done
cp "$WORK/srv" "$CH/srv"
cp -a "$T" "$CH/opt/$NAME"
echo "/opt/$NAME/lib/rstshim/librstshim.so" > "$CH/etc/ld.so.preload"
inventory=$(cd "$CH" && find . -type f ! -path './opt/*' | sort | tr '\n' ' ')
if find "$CH" -name 'libjansson*' | grep -q .; then
    fail glibc_only "jansson in the chroot: $inventory"
else
    timeout 20 env -i RSTSHIM_LOG=/logs/%p.jsonl "$(command -v chroot)" "$CH" /srv > "$WORK/port-chroot" 2> "$WORK/err-chroot" &
    pid=$!
    if line=$(timeout 20 python3 "$WORK/client.py" "$WORK/port-chroot" "$CH/logs" 2>&1) && wait "$pid"; then
        pass glibc_only
        echo "#   chroot holds: $inventory"
        echo "#   $line"
    else
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        fail glibc_only "$line (server stderr: $(head -c 300 "$WORK/err-chroot"); chroot holds: $inventory)"
    fi
fi
finish
