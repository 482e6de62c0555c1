#!/usr/bin/env python3
"""Real servers under librstshim.so: nginx, haproxy, redis-server,
`python3 -m http.server` and a forking socat.  Each case provokes the RST the
server is known for, inside a private network namespace, while the scenario
harness records every RST on `lo`; the shim's close lines are then held
against the wire.

    python3 tests/servers/test_servers.py [-v] [NAME ...]

-v prints every close line and the RSTs seen per case.  NAMEs pick cases.
Needs root (AF_PACKET, unshare -n); as root a missing Debian package is
installed first (apt-get, bounded), otherwise the case prints SKIP.
RSTSHIM_SCENARIO_KEEP=1 keeps each case's log directory.  See README.md."""

import datetime
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "scenario"))
import harness as H  # noqa: E402  (reused, never copied)
from harness import ScenarioError  # noqa: E402

PREP_ENV = "RSTSHIM_SERVERS_PREP"      # skip reasons decided before the netns (JSON)
SNIPPETS = os.path.join(HERE, "..", "..", "README.md")
SBIN_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
APT_TIMEOUT = 300
VERBOSE = False

CASES = []      # (name, fn, [(binary, package)])


def case(*needs):
    def deco(fn):
        CASES.append((fn.__name__[len("c_"):], fn, list(needs)))
        return fn
    return deco


# ------------------------------------------------------------- packages

def find_binary(name):
    path = os.environ.get("PATH", "").split(os.pathsep) + SBIN_PATH
    return shutil.which(name, path=os.pathsep.join(path))


class Apt:
    """apt-get install, bounded; `apt-get update` at most once per run, and
    only when an install failed for want of a package list."""

    def __init__(self):
        self.updated = False

    @staticmethod
    def _run(argv):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=APT_TIMEOUT)
            return r.returncode, r.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            return None, "timed out after %ds" % APT_TIMEOUT
        except OSError as e:
            return None, str(e)

    def install(self, pkg):
        if not shutil.which("apt-get"):
            return "no apt-get on this system"
        cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=60", "install", "-y",
               "--no-install-recommends", pkg]
        print("# installing %s: %s" % (pkg, " ".join(cmd)), flush=True)
        code, out = self._run(cmd)
        if code != 0 and not self.updated and code is not None and re.search(
                r"Unable to locate package|has no installation candidate|Failed to fetch|"
                r"404\s+Not Found|no longer available", out):
            self.updated = True
            print("# apt-get update (the package list lacks %s)" % pkg, flush=True)
            self._run(["apt-get", "-o", "DPkg::Lock::Timeout=60", "update"])
            code, out = self._run(cmd)
        if code != 0:
            last = [l for l in out.strip().splitlines() if l.strip()][-1:] or ["?"]
            return "apt-get install %s failed (%s): %s" % (pkg, code, last[0][:200])
        return None


def prepare(chosen):
    """Outside the namespace (it has no network): install what is missing.
    Returns {case name: skip reason}."""
    skips, apt, failed = {}, Apt(), {}
    for name, _fn, needs in chosen:
        for binary, pkg in needs:
            if find_binary(binary):
                continue
            if pkg not in failed:
                failed[pkg] = apt.install(pkg) if os.geteuid() == 0 else \
                    "not installed (as root: apt-get install -y --no-install-recommends %s)" % pkg
                if failed[pkg] is None and not find_binary(binary):
                    failed[pkg] = "package %s installed but %s not found" % (pkg, binary)
            if failed[pkg]:
                skips[name] = "%s: %s" % (binary, failed[pkg])
                break
    return skips


# ------------------------------------------------------------- processes

def reset_all_signals():
    """A background shell without job control leaves SIGINT/SIGQUIT ignored,
    nohup SIGHUP: children inherit dispositions, so reset them here (the
    harness's reset covers SIGINT/SIGTERM and the mask)."""
    H.reset_own_signals()
    for s in range(1, signal.NSIG):
        if s in (signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE, signal.SIGINT):
            continue
        try:
            if signal.getsignal(s) == signal.SIG_IGN:
                signal.signal(s, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass


def start_time(pid):
    """The process's start time (its identity with the pid); None once it
    is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    except (OSError, IndexError):
        return None


def children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


class Family:
    """Every process a case started and every descendant seen, each known by
    (pid, start time), so that the end can kill survivors by pid safely."""

    def __init__(self, ctx):
        self.ctx, self.seen = ctx, {}

    def scan(self):
        todo = [p.pid for p in self.ctx.procs]
        bound = 0
        while todo and bound < 1000:
            bound += 1
            pid = todo.pop()
            st = start_time(pid)
            if st is None:
                continue
            self.seen.setdefault(pid, st)
            todo += children(pid)
        return set(self.seen)

    def stop(self):
        """SIGTERM, then SIGKILL, each main process by pid (the harness's
        Proc.stop), then SIGKILL any descendant still alive, by pid."""
        self.scan()
        for p in self.ctx.procs:
            p.stop()
        deadline = time.monotonic() + 3
        for pid, st in self.seen.items():
            while start_time(pid) == st and time.monotonic() < deadline:
                time.sleep(0.02)
            if start_time(pid) == st:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def log_lines(ctx):
    return H.read_logs(ctx.logdir, [])


def start_server(ctx, argv, port, name):
    """Start a real server under the shim and wait (bounded) for its listen
    line in the shim's log: the log says when it listens, no probe needed."""
    p = ctx.spawn(None, argv=argv)
    p.addr, p.port, p.family, p.name = "127.0.0.1:%d" % port, port, socket.AF_INET, name
    ctx.server_addrs.add(p.addr)
    deadline = time.monotonic() + 10
    while True:
        if any(o.get("event") == "listen" and o.get("local") == p.addr for o in log_lines(ctx)):
            break
        if p.p.poll() is not None:
            raise ScenarioError("%s exited %s before listening (stderr: %s)"
                                % (name, p.p.returncode, p.stderr()))
        if time.monotonic() > deadline:
            raise ScenarioError("%s: no listen line for %s within 10s (stderr: %s)"
                                % (name, p.addr, p.stderr()))
        time.sleep(0.02)
    ctx.family.scan()
    return p


def endpoint(port):
    return types.SimpleNamespace(port=port, family=socket.AF_INET, addr="127.0.0.1:%d" % port)


class Sender:
    """Send a large body from a thread; the server may reset us mid-way."""

    def __init__(self, sock, data):
        self.error = None
        self.t = threading.Thread(target=self._run, args=(sock, data), daemon=True)
        self.t.start()

    def _run(self, sock, data):
        try:
            sock.sendall(data)
        except OSError as e:
            self.error = e

    def join(self, timeout=10):
        self.t.join(timeout)
        if self.t.is_alive():
            raise ScenarioError("client: the body was neither sent nor refused within %ds" % timeout)


class Trickle(Sender):
    """Send a head, then `chunk` bytes every `pause` s until `total` or an error."""

    def __init__(self, sock, head, total, chunk, pause):
        self.error = None
        self.t = threading.Thread(target=self._trickle, args=(sock, head, total, chunk, pause),
                                  daemon=True)
        self.t.start()

    def _trickle(self, sock, head, total, chunk, pause):
        try:
            sock.sendall(head)
            sent = 0
            while sent < total:                 # bounded: total / chunk rounds
                n = min(chunk, total - sent)
                sock.sendall(b"y" * n)
                sent += n
                time.sleep(pause)
        except OSError as e:
            self.error = e


def recv_until(s, token, timeout=5.0):
    data, deadline = b"", time.monotonic() + timeout
    while token not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ScenarioError("client: %r not received within %.0fs (got %r)" % (token, timeout, data[:200]))
        s.settimeout(left)
        chunk = s.recv(65536)
        if not chunk:
            raise ScenarioError("client: EOF before %r (got %r)" % (token, data[:200]))
        data += chunk
    return data


# ------------------------------------------------------------ expectations

def want(ctx, role, local, peer, flags, rst, unread=0, unread_min=None, comm=None,
         pid=None, not_pid=None, via="close", verified=None, last=False):
    """One expected close line: the scenario-vs-kernel check uses it (as in
    the scenario suite), and check_closes() matches it in the log.  last:
    it is the last close line of that connection (the last release)."""
    ctx.expect_close(role, local, peer, via=via, flags=flags, rst=rst,
                     unread=None if unread_min is not None else unread, pid=pid, not_pid=not_pid)
    e = ctx.expected[-1]
    e.unread_min, e.comm, e.verified, e.last = unread_min, comm, verified, last
    return e


SHORT_KEYS = ("pid", "comm", "fd", "via", "flags", "rst", "unread_bytes", "state", "verified", "adopted")


def short(o):
    """The fields of a close line that decide a verdict, for messages."""
    return json.dumps({k: o[k] for k in SHORT_KEYS if k in o}, separators=(",", ":"))


def check_closes(ctx):
    """Real servers close more than the case is about (listeners at exit,
    keep-alive connections...): every expected close must be in the log,
    field by field; every other close line must be unflagged or only
    'shared' with rst false; no close may leave rst null."""
    def chk(lines):
        problems = []
        closes = [o for o in lines if o.get("event") == "close"]
        used = set()
        for e in ctx.expected:
            same = [o for o in closes if H.close_key(o) == e.key()]
            if e.last:
                cands = same[-1:]
            else:
                cands = [o for o in same if id(o) not in used
                         and (e.pid is None or o.get("pid") == e.pid)
                         and (e.not_pid is None or o.get("pid") != e.not_pid)
                         and (e.flags == ["shared"]) == ("shared" in (o.get("flags") or []))]
            if not cands:
                problems.append("missing close line: expected %s (close lines of this connection: %s)"
                                % (e.describe(), " ".join(short(o) for o in same)))
                continue
            o = cands[0]
            used.add(id(o))
            bad = e.compare(o)
            ub = o.get("unread_bytes")
            if e.unread_min is not None and not (isinstance(ub, int) and ub >= e.unread_min):
                bad.append("unread_bytes %s, expected >= %d" % (json.dumps(ub), e.unread_min))
            if e.comm and o.get("comm") != e.comm:
                bad.append("comm %r, expected %r" % (o.get("comm"), e.comm))
            if e.verified is not None and o.get("verified") != e.verified:
                bad.append("verified %s, expected %s" % (json.dumps(o.get("verified")), json.dumps(e.verified)))
            if bad:
                problems.append("%s%s: %s; got %s" % ("last release: " if e.last else "", e.describe(),
                                                      ", ".join(bad), H.fmt(o)))
        for o in closes:
            if id(o) in used:
                continue
            fl = o.get("flags") or []
            if o.get("rst") is not False or [f for f in fl if f != "shared"]:
                problems.append("unexpected close line: %s" % H.fmt(o))
        return problems
    ctx.close_checks = False
    ctx.extra_checks.append(chk)


def expect_setsockopt_linger(ctx, n_min=1):
    def chk(lines):
        so = [o for o in lines if o.get("event") == "setsockopt" and o.get("option") == "SO_LINGER"]
        good = [o for o in so if o.get("onoff") == 1 and o.get("linger") == 0
                and o.get("flags") == ["linger_zero"]]
        if len(good) < n_min:
            return ["expected >= %d setsockopt SO_LINGER {1,0} line(s) flagged linger_zero, got %s"
                    % (n_min, [H.fmt(o) for o in so])]
        return []
    ctx.extra_checks.append(chk)


def client_saw(ctx, what, got, *alternatives):
    """What a client saw (what drain() returned) must be one of alternatives."""
    if got not in alternatives:
        ctx.notes.append("[kernel] %s: client expected %s, got %r"
                         % (what, " or ".join(repr(a) for a in alternatives), got))


# ------------------------------------------------------------------ nginx

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root;
error_log stderr notice;
pid {tmp}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
{extra}
        location / {{ return 200 "ok\\n"; }}
        location /drop {{ return 444; }}
        location /deny {{ return 403; }}
    }}
}}
"""


def nginx(ctx, extra):
    tmp = tempfile.mkdtemp(prefix="rstshim-nginx-")
    ctx.tmpdirs.append(tmp)
    port = free_port()
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=port, extra="".join(
            "        %s\n" % l for l in extra)))
    return start_server(ctx, [find_binary("nginx"), "-e", "stderr", "-p", tmp + "/",
                              "-c", os.path.join(tmp, "nginx.conf")], port, "nginx")


@case(("nginx", "nginx"))
def c_nginx_header_timeout(ctx):
    """reset_timedout_connection on: a client stalled mid-header is reset
    when client_header_timeout fires (SO_LINGER {1,0}, then close)."""
    srv = nginx(ctx, ["client_header_timeout 1s;", "reset_timedout_connection on;"])
    c = ctx.connect(srv)
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")          # no blank line: stalls mid-header
    data, how = ctx.drain(c, timeout=5)
    client_saw(ctx, "stalled mid-header", how, "ECONNRESET")
    c.close()
    want(ctx, "accepted", srv.addr, c.addr, ["linger_zero"], True, comm="nginx", not_pid=srv.pid)
    expect_setsockopt_linger(ctx)
    check_closes(ctx)


@case(("nginx", "nginx"))
def c_nginx_return_444(ctx):
    """return 444 closes without a response: a GET gets a FIN (no RST), a
    POST whose body nginx never read gets an RST (unread_data).  The fix,
    checked too: `return 403` answers and discards the body: FIN."""
    srv = nginx(ctx, [])
    a = ctx.connect(srv)
    a.sendall(b"GET /drop HTTP/1.1\r\nHost: x\r\n\r\n")
    data, how = ctx.drain(a)
    client_saw(ctx, "GET /drop", (how, data), ("EOF", b""))
    a.close()
    ctx.notes += ctx.expect_no_rst_yet("after 444 on a GET")
    body = b"x" * 65536
    b = ctx.connect(srv)
    b.sendall(b"POST /drop HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    data, how = ctx.drain(b)
    client_saw(ctx, "POST /drop", (how, data), ("ECONNRESET", b""))
    b.close()
    d = ctx.connect(srv)
    d.sendall(b"POST /deny HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    data, how = ctx.drain(d)
    if not data.startswith(b"HTTP/1.1 403"):
        ctx.notes.append("[server] expected a 403 response, got %r then %s" % (data[:80], how))
    client_saw(ctx, "POST /deny", how, "EOF")
    d.close()
    want(ctx, "accepted", srv.addr, a.addr, [], False, comm="nginx", not_pid=srv.pid)
    want(ctx, "accepted", srv.addr, b.addr, ["unread_data"], True, unread_min=1, comm="nginx",
         not_pid=srv.pid)
    want(ctx, "accepted", srv.addr, d.addr, [], False, comm="nginx", not_pid=srv.pid)
    check_closes(ctx)


def post_413(ctx, srv, body_len, chunk, pause):
    """POST a body over client_max_body_size; `chunk` bytes every `pause`
    seconds (all at once when pause is 0).  Returns (response, how it ended)."""
    c = ctx.connect(srv)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % body_len
    if pause == 0:
        snd = Sender(c, head + b"y" * body_len)
    else:
        snd = Trickle(c, head, body_len, chunk, pause)
    data, how = ctx.drain(c, timeout=10)
    snd.join()
    if not data.startswith(b"HTTP/1.1 413"):
        ctx.notes.append("[server] expected a 413 response, got %r then %s" % (data[:80], how))
    c.close()
    return c, how


@case(("nginx", "nginx"))
def c_nginx_413(ctx):
    """A 200 KB body over client_max_body_size 1k, sent at once: nginx
    answers 413 and discards the body (it reads it to the end) before
    closing: a FIN, no RST, and the shim must claim none."""
    srv = nginx(ctx, ["client_max_body_size 1k;"])
    c, how = post_413(ctx, srv, 200000, 0, 0)
    client_saw(ctx, "413, body sent at once", how, "EOF")
    want(ctx, "accepted", srv.addr, c.addr, [], False, comm="nginx", not_pid=srv.pid)
    check_closes(ctx)


@case(("nginx", "nginx"))
def c_nginx_413_lingering_time(ctx):
    """The same body trickled (10 KB every 100 ms) past lingering_time
    (1s here, 30s by default): nginx stops discarding and closes with the
    latest chunk unread: 413, then RST (unread_data)."""
    srv = nginx(ctx, ["client_max_body_size 1k;", "lingering_time 1s;", "lingering_timeout 1s;"])
    c, how = post_413(ctx, srv, 400000, 10000, 0.1)
    client_saw(ctx, "413, body trickled past lingering_time", how, "ECONNRESET")
    want(ctx, "accepted", srv.addr, c.addr, ["unread_data"], True, unread_min=1, comm="nginx",
         not_pid=srv.pid)
    check_closes(ctx)


# ---------------------------------------------------------------- haproxy

HAPROXY_CONF = """\
global
    nbthread 1
    maxconn 64
defaults
    mode tcp
    timeout connect 500ms
    timeout client {tclient}
    timeout server {tserver}
    retries 0
{nolinger}frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server s1 127.0.0.1:{backend}
"""


def haproxy(ctx, backend_port, tclient="1s", tserver="10s", nolinger=True):
    tmp = tempfile.mkdtemp(prefix="rstshim-haproxy-")
    ctx.tmpdirs.append(tmp)
    port = free_port()
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(HAPROXY_CONF.format(port=port, backend=backend_port, tclient=tclient, tserver=tserver,
                                    nolinger="    option nolinger\n" if nolinger else ""))
    srv = start_server(ctx, [find_binary("haproxy"), "-db", "-f", cfg], port, "haproxy")

    def proxy_side(lines):
        # haproxy's own connections to the backend are the shim's to explain too
        for o in lines:
            if o.get("event") == "connect" and o.get("local"):
                ctx.server_addrs.add(o["local"])
        return []
    ctx.pre_verdict.append(proxy_side)
    return srv


def through_proxy(ctx, srv, be):
    """A client, its connection through haproxy and the backend's side of
    it; one exchange each way.  Returns (client, backend conn, proxy addr)."""
    c = ctx.connect(srv)
    c.sendall(b"hello")
    b, peer = be.accept()
    ctx.socks.append(b)
    recv_until(b, b"hello")
    b.sendall(b"hi")
    recv_until(c, b"hi")
    return c, b, "127.0.0.1:%d" % peer[1]


def hold_until_rst(ctx, src, dst):
    """After EOF keep the socket open until the server's RST is on the wire
    (bounded): closing at once would race its close (FIN vs RST)."""
    if not ctx.rec.wait_rsts(lambda r: r[1] == src and r[2] == dst, 1, timeout=3):
        ctx.notes.append("[kernel] no RST %s -> %s within 3s of the EOF" % (src, dst))


@case(("haproxy", "haproxy"))
def c_haproxy_nolinger_timeout(ctx):
    """option nolinger: when `timeout client` fires haproxy closes both of
    its connections itself, each with SO_LINGER {1,0}: two RSTs (the
    client's after a FIN: haproxy shuts down first, then closes)."""
    be = ctx.listen()
    srv = haproxy(ctx, be.getsockname()[1], tclient="1s")
    c, b, proxy = through_proxy(ctx, srv, be)
    data, how = ctx.drain(c, timeout=5)                   # idle until timeout client
    client_saw(ctx, "client idle past timeout client", how, "ECONNRESET", "EOF")
    hold_until_rst(ctx, srv.addr, c.addr)
    bdata, bhow = ctx.drain(b, timeout=5)
    client_saw(ctx, "backend side", bhow, "ECONNRESET")
    c.close()
    b.close()
    want(ctx, "accepted", srv.addr, c.addr, ["linger_zero"], True, pid=srv.pid)
    want(ctx, "connected", proxy, be.addr, ["linger_zero"], True, pid=srv.pid)
    expect_setsockopt_linger(ctx, 2)
    check_closes(ctx)


@case(("haproxy", "haproxy"))
def c_haproxy_timeout_without_nolinger(ctx):
    """The fix, checked: the same timeout without `option nolinger`: haproxy
    closes both connections with a FIN, and the shim claims no RST."""
    be = ctx.listen()
    srv = haproxy(ctx, be.getsockname()[1], tclient="500ms", nolinger=False)
    c, b, proxy = through_proxy(ctx, srv, be)
    bdata, bhow = ctx.drain(b, timeout=5)               # haproxy shuts the backend side first
    client_saw(ctx, "backend side", bhow, "EOF")
    b.close()
    data, how = ctx.drain(c, timeout=5)
    client_saw(ctx, "client idle past timeout client", how, "EOF")
    c.close()
    time.sleep(0.1)
    want(ctx, "accepted", srv.addr, c.addr, [], False, pid=srv.pid)
    want(ctx, "connected", proxy, be.addr, [], False, pid=srv.pid)

    def no_linger(lines):
        # haproxy sets SO_LINGER {0,0} on its listener then: no linger_zero anywhere
        so = [H.fmt(o) for o in lines if o.get("event") == "setsockopt"
              and "linger_zero" in (o.get("flags") or [])]
        return ["linger_zero without option nolinger: %s" % so] if so else []
    ctx.extra_checks.append(no_linger)
    check_closes(ctx)


@case(("haproxy", "haproxy"))
def c_haproxy_nolinger_client_closes(ctx):
    """option nolinger and a client that closes first: haproxy 2.6 sets
    SO_LINGER {1,0} on the listener, every accepted socket inherits it, so
    its close in CLOSE_WAIT is still an RST; the backend side too."""
    be = ctx.listen()
    srv = haproxy(ctx, be.getsockname()[1], tclient="10s")
    c, b, proxy = through_proxy(ctx, srv, be)
    c.close()                                           # the client closes first
    bdata, bhow = ctx.drain(b, timeout=5)
    client_saw(ctx, "backend after the client's close", bhow, "ECONNRESET", "EOF")
    hold_until_rst(ctx, proxy, be.addr)
    b.close()
    want(ctx, "accepted", srv.addr, c.addr, ["linger_zero"], True, pid=srv.pid)
    want(ctx, "connected", proxy, be.addr, ["linger_zero"], True, pid=srv.pid)

    def listener_linger(lines):
        so = [o for o in lines if o.get("event") == "setsockopt" and o.get("option") == "SO_LINGER"
              and o.get("local") == srv.addr and o.get("peer") is None]
        return [] if so else ["no setsockopt SO_LINGER line on the listener %s" % srv.addr]
    ctx.extra_checks.append(listener_linger)
    check_closes(ctx)


@case(("haproxy", "haproxy"))
def c_haproxy_backend_gone(ctx):
    """The backend goes away (its listener closed: connection refused):
    haproxy ends the client's connection itself, FIN then the nolinger
    close: RST.  haproxy's own connect ends in CLOSE (refused): no RST."""
    be = ctx.listen()
    bport = be.getsockname()[1]
    be.close()                                          # gone: connect is refused
    srv = haproxy(ctx, bport)
    c = ctx.connect(srv)
    c.sendall(b"hello")
    data, how = ctx.drain(c, timeout=5)
    client_saw(ctx, "backend refused", how, "ECONNRESET", "EOF")
    hold_until_rst(ctx, srv.addr, c.addr)
    c.close()
    want(ctx, "accepted", srv.addr, c.addr, ["linger_zero"], True, pid=srv.pid)

    def refused(lines):
        con = [o for o in lines if o.get("event") == "close" and o.get("role") == "connected"]
        bad = [o for o in con if o.get("peer") != "127.0.0.1:%d" % bport or o.get("rst") is not False
               or o.get("state") != "CLOSE"]
        if not con or bad:
            return ["expected haproxy's refused connect to close in CLOSE, rst false: %s"
                    % [H.fmt(o) for o in con]]
        return []
    ctx.extra_checks.append(refused)
    check_closes(ctx)


# ------------------------------------------------------------------ redis

def redis(ctx):
    tmp = tempfile.mkdtemp(prefix="rstshim-redis-")
    ctx.tmpdirs.append(tmp)
    port = free_port()
    return start_server(ctx, [find_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", tmp,
                              "--daemonize", "no", "--logfile", ""], port, "redis-server")


@case(("redis-server", "redis-server"))
def c_redis_protocol_error(ctx):
    """An invalid multibulk header and 64 KiB more: redis reads 16 KiB,
    answers -ERR Protocol error and closes with the rest unread: RST."""
    srv = redis(ctx)
    c = ctx.connect(srv)
    c.sendall(b"*abc\r\n" + b"z" * 65536)
    data, how = ctx.drain(c)
    if b"Protocol error" not in data:
        ctx.notes.append("[server] expected -ERR Protocol error, got %r then %s" % (data[:80], how))
    client_saw(ctx, "protocol error", how, "ECONNRESET")
    c.close()
    want(ctx, "accepted", srv.addr, c.addr, ["unread_data"], True, unread_min=1, pid=srv.pid,
         comm="redis-server")
    check_closes(ctx)


@case(("redis-server", "redis-server"))
def c_redis_client_kill(ctx):
    """CLIENT KILL closes another client's connection: a FIN (nothing
    unread); the RST comes only when that client sends again, from the
    kernel, and no close line may claim it."""
    srv = redis(ctx)
    a = ctx.connect(srv)
    a.sendall(b"PING\r\n")
    recv_until(a, b"+PONG\r\n")
    k = ctx.connect(srv)
    k.sendall(b"CLIENT KILL ADDR %s\r\n" % a.addr.encode())
    recv_until(k, b":1\r\n")
    data, how = ctx.drain(a)
    client_saw(ctx, "killed client", (how, data), ("EOF", b""))
    ctx.notes += ctx.expect_no_rst_yet("after CLIENT KILL")
    ctx.mark_late()
    a.sendall(b"PING\r\n")
    if not ctx.rec.wait_rsts(lambda r: r[1] == srv.addr and r[2] == a.addr, 1):
        ctx.notes.append("[kernel] the killed client's late send drew no RST within 3s")
    a.close()
    ctx.late_rsts = [(srv.addr, a.addr)]
    k.sendall(b"QUIT\r\n")
    data, how = ctx.drain(k)
    k.close()
    want(ctx, "accepted", srv.addr, a.addr, [], False, pid=srv.pid)
    want(ctx, "accepted", srv.addr, k.addr, [], False, pid=srv.pid)
    check_closes(ctx)


# ------------------------------------------------------------ http.server

@case()
def c_python_http_server(ctx):
    """python3 -m http.server has no do_POST: 501, then shutdown + close
    with the 200 KB body unread: RST."""
    tmp = tempfile.mkdtemp(prefix="rstshim-httpd-")
    ctx.tmpdirs.append(tmp)
    port = free_port()
    srv = start_server(ctx, [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                             "--directory", tmp, str(port)], port, "http.server")
    c = ctx.connect(srv)
    body = b"p" * 200000
    # head and body in one send: the first segments carry both, so the body
    # is queued when the server reads the head (a head sent alone would be
    # answered and closed before the body arrives: FIN, then RSTs drawn by
    # the late body that no close causes)
    snd = Sender(c, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    data, how = ctx.drain(c, timeout=8)
    snd.join()
    if b" 501 " not in data.split(b"\r\n", 1)[0]:
        ctx.notes.append("[server] expected a 501 response, got %r then %s" % (data[:80], how))
    client_saw(ctx, "POST to http.server", how, "ECONNRESET", "EOF")
    c.close()
    want(ctx, "accepted", srv.addr, c.addr, ["unread_data"], True, unread_min=1, pid=srv.pid)
    check_closes(ctx)


# ------------------------------------------------------------------ socat

def socat(ctx, left_opts, right):
    port = free_port()
    return start_server(ctx, [find_binary("socat"),
                              "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork%s" % (port, left_opts),
                              right], port, "socat")


@case(("socat", "socat"))
def c_socat_fork(ctx):
    """socat TCP-LISTEN:...,fork,readbytes=4 SYSTEM:...: the parent accepts,
    forks and closes its copy (shared: the child still holds it); the child
    reads 4 bytes, relays the program's answer and closes with 96 bytes
    unread: the last release, an RST, verified with the kernel."""
    srv = socat(ctx, ",readbytes=4", "SYSTEM:cat >/dev/null; echo OK")
    c = ctx.connect(srv)
    c.sendall(b"PING" + b"x" * 96)
    data, how = ctx.drain(c)
    if data != b"OK\n":
        ctx.notes.append("[server] expected OK, got %r then %s" % (data[:80], how))
    client_saw(ctx, "socat child", how, "ECONNRESET", "EOF")   # EOF: it shut down first
    hold_until_rst(ctx, srv.addr, c.addr)
    c.close()
    want(ctx, "accepted", srv.addr, c.addr, ["shared"], False, unread=None, pid=srv.pid,
         verified=True)
    want(ctx, "accepted", srv.addr, c.addr, ["unread_data"], True, unread=96, not_pid=srv.pid,
         comm="socat", via="exit", verified=True, last=True)
    check_closes(ctx)


SOCAT_SCRIPT = """\
#!/bin/sh
# stdin and stdout are the connection (socat ...,fork EXEC:this,nofork)
dd bs=4 count=1 of=/dev/null 2>/dev/null
printf 'OK\\n'
read go < %s
"""


def release_fifo(fifo, timeout=5.0):
    """Let the script's `read go < fifo` return (bounded, never blocks)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() > deadline:
                raise ScenarioError("the script never opened its fifo: %s" % e)
            time.sleep(0.01)
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)


@case(("socat", "socat"))
def c_socat_fork_exec(ctx):
    """inetd style: socat ...,fork EXEC:script,nofork hands the connection to
    a shell as stdin/stdout; the shell runs dd (a child of its own, which
    reads 4 bytes and exits), answers, and exits when the test says so,
    with 96 bytes unread.  The wire is checked while the shell still holds
    the socket (dd gone): no RST yet; then only the shell's exit, the last
    release, may claim the one RST.  The parent's, the exec's and dd's
    closes are shared."""
    tmp = tempfile.mkdtemp(prefix="rstshim-socat-")
    ctx.tmpdirs.append(tmp)
    fifo = os.path.join(tmp, "go")
    os.mkfifo(fifo, 0o600)
    script = os.path.join(tmp, "serve.sh")
    with open(script, "w") as f:
        f.write(SOCAT_SCRIPT % fifo)
    os.chmod(script, 0o755)
    srv = socat(ctx, "", "EXEC:%s,nofork" % script)
    c = ctx.connect(srv)
    c.sendall(b"PING" + b"x" * 96)
    recv_until(c, b"OK\n")                             # dd has exited: printf runs after it
    ctx.family.scan()
    ctx.notes += ctx.expect_no_rst_yet("dd exited, the shell still holds the connection")
    release_fifo(fifo)
    data, how = ctx.drain(c)
    client_saw(ctx, "the shell's exit", how, "ECONNRESET")
    c.close()
    want(ctx, "accepted", srv.addr, c.addr, ["shared"], False, unread=None, pid=srv.pid,
         verified=True)
    want(ctx, "accepted", srv.addr, c.addr, ["unread_data"], True, unread=96, not_pid=srv.pid,
         comm="serve.sh", via="exit", verified=True, last=True)
    check_closes(ctx)


# ------------------------------------------------------- README snippets

# The variables the shim reads (shim/init.c), so the README may name no other.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shim",
                       "init.c")) as _f:
    SHIM_ENV = set(re.findall(r'getenv\("(RSTSHIM_[A-Z_]+)"\)', _f.read()))
SAMPLE_LOG = "/var/log/rstshim/12345.jsonl"     # what RSTSHIM_LOG=/var/log/rstshim/%p.jsonl makes
SAMPLE_TS = "2026-11-22T02:37:22.899568Z"


def snippet_blocks(text):
    """Fenced blocks whose first line is '# NAME ...', by NAME."""
    out = {}
    for body in re.findall(r"```[\w-]*\n(.*?)```", text, re.S):
        first = body.split("\n", 1)[0].strip()
        if first.startswith("# ") and len(first.split()) > 1:
            out[first.split()[1]] = body
    return out


def classic_sections(text):
    """Fluent Bit's classic format: [SECTION] then 'Key value' lines."""
    out, cur = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            cur = (m.group(1).upper(), {})
            out.append(cur)
        elif cur is None:
            raise ValueError("a key outside any section: %r" % line)
        else:
            kv = line.split(None, 1)
            if len(kv) != 2:
                raise ValueError("a key without a value: %r" % line)
            cur[1][kv[0].lower()] = kv[1].strip()
    return out


def check_vector(toml_text, problems):
    import fnmatch
    try:
        import tomllib
    except ImportError:
        return "tomllib missing (Python < 3.11): vector.toml not parsed"
    try:
        cfg = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as e:
        problems.append("vector.toml is not TOML: %s" % e)
        return None
    sources, transforms, sinks = (cfg.get(k, {}) for k in ("sources", "transforms", "sinks"))
    files = [n for n, c in sources.items() if c.get("type") == "file"
             and any(fnmatch.fnmatch(SAMPLE_LOG, g) for g in c.get("include", []))]
    if not files:
        problems.append("vector.toml: no file source whose include matches %s" % SAMPLE_LOG)
    known = set(sources) | set(transforms)
    for kind, comps in (("transforms", transforms), ("sinks", sinks)):
        for name, c in comps.items():
            for i in c.get("inputs", []):
                if i not in known:
                    problems.append("vector.toml: %s.%s takes input %r, which is not defined" % (kind, name, i))
            if not c.get("inputs"):
                problems.append("vector.toml: %s.%s has no inputs" % (kind, name))
    # every sink is fed, through the transforms, by the file source
    def reaches(name, depth=0):
        if name in files:
            return True
        c = transforms.get(name) or sinks.get(name) or {}
        return depth < 20 and any(reaches(i, depth + 1) for i in c.get("inputs", []))
    if not sinks or not all(reaches(n) for n in sinks):
        problems.append("vector.toml: not every sink is fed by the rstshim file source")
    remaps = [c for c in transforms.values() if c.get("type") == "remap"]
    if not any("parse_json" in c.get("source", "") for c in remaps):
        problems.append("vector.toml: no remap parses the JSON lines")
    for c in transforms.values():
        for field in re.findall(r"\.(\w+)\s*==", c.get("condition", "")):
            if field not in ("event", "rst", "role", "via", "comm", "local", "peer", "tag"):
                problems.append("vector.toml: condition on %r, not a field of the log" % field)
    return None


def check_fluent_bit(conf, parsers, problems):
    import fnmatch
    try:
        main, pars = classic_sections(conf), classic_sections(parsers)
    except ValueError as e:
        problems.append("fluent-bit config: %s" % e)
        return
    service = [kv for name, kv in main if name == "SERVICE"]
    if not service or service[0].get("parsers_file") != "parsers.conf":
        problems.append("fluent-bit.conf: [SERVICE] Parsers_File is not parsers.conf")
    inputs = [kv for name, kv in main if name == "INPUT" and kv.get("name") == "tail"]
    if not inputs or not fnmatch.fnmatch(SAMPLE_LOG, inputs[0].get("path", "")):
        problems.append("fluent-bit.conf: no tail [INPUT] whose Path matches %s" % SAMPLE_LOG)
        return
    tag = inputs[0].get("tag", "")
    defined = {kv.get("name"): kv for name, kv in pars if name == "PARSER"}
    parser = defined.get(inputs[0].get("parser"))
    if parser is None:
        problems.append("fluent-bit.conf: Parser %r is not defined in parsers.conf" % inputs[0].get("parser"))
    else:
        if parser.get("format") != "json" or parser.get("time_key") != "ts":
            problems.append("parsers.conf: expected Format json and Time_Key ts: %s" % parser)
        fmt_ = parser.get("time_format", "").replace("%L", "%f")      # %L: fractions
        try:
            datetime.datetime.strptime(SAMPLE_TS, fmt_)
        except ValueError as e:
            problems.append("parsers.conf: Time_Format %r does not read ts %s: %s"
                            % (parser.get("time_format"), SAMPLE_TS, e))
    outputs = [kv for name, kv in main if name == "OUTPUT"]
    if not outputs or not all(fnmatch.fnmatch(tag, kv.get("match", "")) for kv in outputs):
        problems.append("fluent-bit.conf: an [OUTPUT] Match does not match the input's Tag %r" % tag)


def check_deploy(docker, yaml, problems):
    lib = re.search(r"LD_PRELOAD=(\S+)", docker)
    copy = re.search(r"^COPY\s+(\S+)\s+(\S+)", docker, re.M)
    if not lib or not copy or copy.group(2) != lib.group(1):
        problems.append("Dockerfile: COPY destination and LD_PRELOAD differ")
    elif not re.match(r"^rstshim-[0-9.]+/lib/rstshim/librstshim\.so$", copy.group(1)):
        problems.append("Dockerfile: COPY source %r is not the tarball's library" % copy.group(1))
    if "RSTSHIM_LOG=/var/log/rstshim/%p.jsonl" not in docker:
        problems.append("Dockerfile: RSTSHIM_LOG is not /var/log/rstshim/%p.jsonl")
    if "install -d -m 1733 /var/log/rstshim" not in docker:
        problems.append("Dockerfile: the log directory is not created writable by worker users")
    env = dict(re.findall(r"- name: (\w+)\n\s+value: (\S+)", yaml))
    if lib and env.get("LD_PRELOAD") != lib.group(1):
        problems.append("deployment.yaml: LD_PRELOAD %r, the Dockerfile says %r" % (env.get("LD_PRELOAD"), lib.group(1)))
    mount = re.search(r"mountPath: (\S+)", yaml)
    if not mount or os.path.dirname(env.get("RSTSHIM_LOG", "")) != mount.group(1):
        problems.append("deployment.yaml: RSTSHIM_LOG %r is not in the mounted log volume" % env.get("RSTSHIM_LOG"))


def c_collector_snippets():
    """README.md: the shipping configs and deployment snippets agree
    with the log (path, fields, time format) and with each other; every log
    line quoted there passes the harness's schema check.  vector/fluent-bit
    validate their configs when installed (Debian 12 packages neither)."""
    problems, notes = [], []
    try:
        with open(SNIPPETS) as f:
            text = f.read()
    except OSError as e:
        return ["cannot read %s: %s" % (SNIPPETS, e)], notes
    blocks = snippet_blocks(text)
    missing = [n for n in ("vector.toml", "fluent-bit.conf", "parsers.conf", "Dockerfile", "deployment.yaml")
               if n not in blocks]
    if missing:
        return ["README.md lacks blocks: %s" % missing], notes
    unknown = set(re.findall(r"\bRSTSHIM_[A-Z_]+", text)) - SHIM_ENV
    if unknown:
        problems.append("unknown variables in the snippets: %s" % sorted(unknown))
    note = check_vector(blocks["vector.toml"], problems)
    if note:
        notes.append(note)
    check_fluent_bit(blocks["fluent-bit.conf"], blocks["parsers.conf"], problems)
    check_deploy(blocks["Dockerfile"], blocks["deployment.yaml"], problems)
    quoted = 0
    # the shim's own lines: "ts" then "mono_ns" (rstshim explain --json lines also open with "ts")
    for raw in re.findall(r"^(\{\"ts\":\"[^\"]*\",\"mono_ns\".*\})$", text, re.M):
        quoted += 1
        try:
            o = json.loads(raw)
        except ValueError as e:
            problems.append("a quoted log line is not JSON (%s): %s" % (e, raw[:120]))
            continue
        o["_file"], o["_filepid"] = "README.md", o.get("pid")
        problems += ["quoted line: " + p for p in H.validate_line(o)]
    if quoted < 5:
        problems.append("only %d log lines quoted in README.md" % quoted)
    tools = []
    with tempfile.TemporaryDirectory(prefix="rstshim-snippets-") as tmp:
        for name in ("vector.toml", "fluent-bit.conf", "parsers.conf"):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(blocks[name])
        vector = find_binary("vector")
        if vector:
            tools.append("vector")
            r = subprocess.run([vector, "validate", "--no-environment", os.path.join(tmp, "vector.toml")],
                               capture_output=True, timeout=60)
            if r.returncode != 0:
                problems.append("vector validate: %s" % r.stdout.decode(errors="replace")[-300:])
        fb = find_binary("fluent-bit") or (os.path.exists("/opt/fluent-bit/bin/fluent-bit")
                                            and "/opt/fluent-bit/bin/fluent-bit")
        if fb:
            tools.append("fluent-bit")
            r = subprocess.run([fb, "--dry-run", "-c", os.path.join(tmp, "fluent-bit.conf")],
                               capture_output=True, timeout=60, cwd=tmp)
            if r.returncode != 0:
                problems.append("fluent-bit --dry-run: %s" % r.stdout.decode(errors="replace")[-300:])
    notes.append("configs validated by %s" % " and ".join(tools) if tools else
                 "neither vector nor fluent-bit is installed (no Debian 12 package): the collector "
                 "configs are checked for structure only, documentation otherwise")
    return problems, notes


PLAIN_CASES = [("collector_snippets", c_collector_snippets)]


# ---------------------------------------------------------------- runner

def dump(ctx):
    lines = log_lines(ctx)
    for o in lines:
        if o.get("event") in ("close", "setsockopt", "peer_reset", "config_error"):
            print("#   " + H.fmt(o))
    rs = ctx.rec.since(ctx.start)
    print("#   wire RSTs: %s" % ["%s -> %s at mono_ns ~%d" % (r[1], r[2], r[0] * 1e9) for r in rs])


def run_case(name, fn, recorder):
    ctx = H.Ctx(name, recorder, shim=True)
    ctx.family = Family(ctx)
    ctx.tmpdirs, ctx.pre_verdict = [], []
    problems = []
    try:
        fn(ctx)
        ctx.family.scan()
        # let the servers write what follows the clients' closes, then stop them
        time.sleep(0.1)
        ctx.family.stop()
        lines = log_lines(ctx)
        for hook in ctx.pre_verdict:
            problems += hook(lines)
        # every pid that wrote to this case's log dir is one of its processes:
        # only they had this RSTSHIM_LOG (pid == file name is checked per line)
        ctx.stray_pids += [o["_filepid"] for o in lines]
        if VERBOSE:
            dump(ctx)
        problems += ctx.verdict()
    finally:
        ctx.family.stop()
        ctx.cleanup()
        for d in ctx.tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
    return problems


def run_plain(chosen_plain):
    """Cases that need no server, no root and no namespace."""
    passed = failed = 0
    for name, fn in chosen_plain:
        try:
            problems, notes = fn()
        except Exception as e:  # a bug in the suite: report it, go on
            problems, notes = ["harness error: %s" % "".join(
                traceback.format_exception_only(type(e), e)).strip()], []
        for n in notes:
            print("# %s: %s" % (name, n))
        if H.report(name, problems):
            passed += 1
        else:
            failed += 1
    return passed, failed


def main(argv):
    global VERBOSE
    VERBOSE = "-v" in argv
    names = [a for a in argv if not a.startswith("-")]
    known = [n for n, _f, _n in CASES] + [n for n, _f in PLAIN_CASES]
    unknown = [n for n in names if n not in known]
    if unknown:
        print("unknown case(s): %s; known: %s" % (unknown, " ".join(known)))
        return 2
    chosen = [c for c in CASES if not names or c[0] in names]
    chosen_plain = [c for c in PLAIN_CASES if not names or c[0] in names]

    def skip_all(why):
        passed, failed = run_plain(chosen_plain)
        for n, _f, _n in chosen:
            print("SKIP %s: %s" % (n, why))
        print("%d passed, %d failed, %d skipped" % (passed, failed, len(chosen)))
        return 1 if failed else 0

    if os.geteuid() != 0:
        return skip_all("needs root (AF_PACKET capture on lo, a private network namespace)")
    if PREP_ENV not in os.environ:
        t0 = time.monotonic()
        os.environ[PREP_ENV] = json.dumps(prepare(chosen))
        if VERBOSE:
            print("# packages checked in %.1fs" % (time.monotonic() - t0))
    skips = json.loads(os.environ[PREP_ENV])
    reset_all_signals()
    why = H.enter_private_netns([os.path.abspath(__file__)] + argv)
    recorder = None
    if why is None and chosen:
        try:
            recorder = H.Recorder()
        except OSError as e:
            why = "AF_PACKET capture on lo refused: %s" % e
    if why:
        return skip_all(why)

    t_all = time.monotonic()
    passed, failed = run_plain(chosen_plain)
    skipped = 0
    for name, fn, _needs in chosen:
        if name in skips:
            print("SKIP %s: %s" % (name, skips[name]))
            skipped += 1
            continue
        if not os.path.exists(H.SHIM):
            print("FAIL %s: not built: %s (run make)" % (name, H.SHIM))
            failed += 1
            continue
        t0 = time.monotonic()
        problems = H.problems_of(lambda: run_case(name, fn, recorder), VERBOSE)
        dt = time.monotonic() - t0
        if H.report(name, problems, " (%.2fs)" % dt if VERBOSE else ""):
            passed += 1
        else:
            failed += 1
    if recorder:
        recorder.close()
    if VERBOSE:
        print("# total %.1fs" % (time.monotonic() - t_all))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
