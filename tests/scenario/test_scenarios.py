#!/usr/bin/env python3
"""Scenario tests: real servers under librstshim.so while an AF_PACKET socket
on `lo` records every RST; the shim's JSON is held against the wire.

    python3 tests/scenario/test_scenarios.py [-v] [--bare] [NAME ...]

--bare runs the servers without the shim and checks only the scenarios' own
expectations against the kernel (a self-test of the suite).  NAMEs pick
scenarios.  Needs root; prints SKIP otherwise.  See README.md."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import HEAD_LEN, REST_LEN, ScenarioError  # noqa: E402

SCENARIOS = []


def scenario(fn):
    SCENARIOS.append((fn.__name__[len("s_"):], fn))
    return fn


PING = b"PING"
UNREAD = PING + b"x" * REST_LEN      # HEAD_LEN read by the server, REST_LEN left


def request_reply(ctx, srv, payload=PING):
    """The clean client: request, SHUT_WR, reply until EOF."""
    return request_reply_on(ctx, ctx.connect(srv), payload)


def request_reply_on(ctx, c, payload=PING):
    """request_reply on a connection made already."""
    c.sendall(payload)
    c.shutdown(socket.SHUT_WR)
    data, how = ctx.drain(c)
    if how != "EOF" or data != b"OK %d\n" % len(payload):
        raise ScenarioError("client got %r then %s" % (data, how))
    c.close()
    return c


def drain_expect_reset(ctx, c, got="got %r %s"):
    """Read c until EOF or error; note a [kernel] problem unless the server's
    RST ended it (ECONNRESET); close c."""
    data, how = ctx.drain(c)
    if how != "ECONNRESET":
        ctx.notes.append("[kernel] client expected ECONNRESET, " + got % (data, how))
    c.close()


def unread_client(ctx, srv):
    """Send head + rest in one segment; the server's close resets us."""
    c = ctx.connect(srv)
    c.sendall(UNREAD)
    drain_expect_reset(ctx, c, got="got %r then %s")
    return c


def expect_unread_close(ctx, srv, c, via="close"):
    ctx.expect_close("accepted", srv.addr, c.addr, via=via, flags=["unread_data"],
                     rst=True, unread=REST_LEN, pid=srv.pid)


# --------------------------------------------------------------- scenarios

def clean_scenario(ctx, mode):
    """One clean request/reply: a FIN close with no flags."""
    srv = ctx.server(mode)
    c = request_reply(ctx, srv)
    ctx.finish_server(srv)
    ctx.expect_close("accepted", srv.addr, c.addr)
    ctx.expect_listener(srv)


def unread_scenario(ctx, mode, via="close", **server_args):
    """One close with REST_LEN bytes unread, released by `via`: the RST."""
    srv = ctx.server(mode, **server_args)
    c = unread_client(ctx, srv)
    ctx.finish_server(srv)
    expect_unread_close(ctx, srv, c, via=via)
    ctx.expect_listener(srv)


@scenario
def s_clean(ctx):
    clean_scenario(ctx, "clean")


@scenario
def s_unread(ctx):
    unread_scenario(ctx, "unread")


@scenario
def s_ipv6(ctx):
    try:
        with open("/proc/net/if_inet6") as f:
            has_lo6 = "0" * 31 + "1" in f.read()
    except OSError:
        has_lo6 = False
    if not has_lo6:
        return "SKIP", "no ::1 on lo (IPv6 disabled)"
    unread_scenario(ctx, "ipv6", family=socket.AF_INET6)


@scenario
def s_python(ctx):
    """A Python socket server under the shim: close with unread data."""
    code = r"""
import fcntl, os, select, signal, socket, struct, sys, termios
for s in range(1, signal.NSIG):
    try: signal.signal(s, signal.SIG_DFL)
    except (OSError, ValueError, RuntimeError): pass
signal.pthread_sigmask(signal.SIG_SETMASK, [])
signal.alarm(30)
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.bind(("127.0.0.1", 0)); l.listen(16)
print("PORT", l.getsockname()[1], flush=True)
if not select.select([l], [], [], 10)[0]: sys.exit(3)
c, _ = l.accept()
head = b""
while len(head) < %d:
    if not select.select([c], [], [], 5)[0]: sys.exit(4)
    head += c.recv(%d - len(head))
for _ in range(5000):
    q = struct.unpack("i", fcntl.ioctl(c, termios.FIONREAD, b"\0" * 4))[0]
    if q >= %d: break
    select.select([], [], [], 0.001)
else: sys.exit(5)
c.close(); l.close()
print("DONE", flush=True)
""" % (HEAD_LEN, HEAD_LEN, REST_LEN)
    unread_scenario(ctx, None, argv=[sys.executable, "-c", code])


@scenario
def s_linger0(ctx):
    srv = ctx.server("linger0")
    c = ctx.connect(srv)
    c.sendall(PING)
    drain_expect_reset(ctx, c, got="got %r then %s")
    ctx.finish_server(srv)
    ctx.expect_close("accepted", srv.addr, c.addr, flags=["linger_zero"], rst=True, unread=0)
    ctx.expect_listener(srv)

    def setsockopt_line(lines):
        so = [o for o in lines if o.get("event") == "setsockopt" and o.get("option") == "SO_LINGER"]
        if len(so) != 1:
            return ["expected one setsockopt SO_LINGER line, got %d" % len(so)]
        o, bad = so[0], []
        if o.get("onoff") != 1 or o.get("linger") != 0:
            bad.append("onoff/linger %r/%r, expected 1/0" % (o.get("onoff"), o.get("linger")))
        if o.get("flags") != ["linger_zero"]:
            bad.append("flags %r, expected [\"linger_zero\"]" % (o.get("flags"),))
        return ["setsockopt SO_LINGER: %s: %s" % (", ".join(bad), H.fmt(o))] if bad else []
    ctx.extra_checks.append(setsockopt_line)


def fix_line_check(event, fields):
    """An extra check: exactly one `event` line carrying these fields."""
    def check(lines):
        found = [o for o in lines if o.get("event") == event and o.get("fix")]
        if len(found) != 1:
            return ["expected one %s line with a fix, got %d" % (event, len(found))]
        bad = ["%s %r, expected %r" % (k, found[0].get(k), v) for k, v in fields.items()
               if found[0].get(k) != v]
        return ["%s: %s: %s" % (event, ", ".join(bad), H.fmt(found[0]))] if bad else []
    return check


def expect_fin(ctx, c):
    """Read c to its end: a FIN (EOF), never a reset."""
    data, how = ctx.drain(c)
    if how != "EOF":
        ctx.notes.append("client expected EOF (FIN), got %r then %s" % (data, how))
    c.close()


def linger2_scenario(ctx, mode):
    """TCP_LINGER2 -1, a reply, then the server's close; the client keeps its
    side open, so the orphan cannot wait in FIN_WAIT2: an RST."""
    srv = ctx.server(mode)
    c = ctx.connect(srv)
    c.sendall(PING)
    data, how = ctx.drain(c)           # the reply, then the server's FIN ...
    if how != "EOF":
        ctx.notes.append("[kernel] client expected the reply and EOF, got %r %s" % (data, how))
    ctx.finish_server(srv)             # ... the client's side stays open meanwhile
    c.close()
    ctx.expect_close("accepted", srv.addr, c.addr, flags=["tcp_linger2"], rst=True, unread=0,
                     pid=srv.pid)
    ctx.expect_listener(srv)

    def setsockopt_line(lines):
        found = [o for o in lines if o.get("event") == "setsockopt"
                 and o.get("option") == "TCP_LINGER2"]
        ok = len(found) == 1 and found[0].get("flags") == ["tcp_linger2"] \
            and found[0].get("linger2") == -1 and found[0].get("peer") == c.addr
        return [] if ok else ["expected one TCP_LINGER2 setsockopt line (flags [tcp_linger2], "
                              "linger2 -1): %s" % [H.fmt(o) for o in found]]
    ctx.extra_checks.append(setsockopt_line)


@scenario
def s_linger2(ctx):
    """After shutdown(SHUT_WR): the close finds FIN_WAIT2 and aborts."""
    linger2_scenario(ctx, "linger2")


@scenario
def s_linger2_close(ctx):
    """A plain close in ESTABLISHED: the client's ACK of the FIN is answered by an RST."""
    linger2_scenario(ctx, "linger2_close")


@scenario
def s_sniff(ctx):
    """The server lets the whole request queue up, reads none of it and
    closes at once: unread_data and immediate_close together, an RST."""
    srv = ctx.server("sniff")
    c = unread_client(ctx, srv)
    ctx.finish_server(srv)
    ctx.expect_close("accepted", srv.addr, c.addr, flags=["unread_data", "immediate_close"],
                     rst=True, unread=HEAD_LEN + REST_LEN, pid=srv.pid)
    ctx.expect_listener(srv)


def fix_drain_scenario(ctx, mode, flags, drained, without):
    """RSTSHIM_FIX=drain on `mode`'s server: the shim reads away what the
    application left unread before the close, so the client gets a FIN."""
    if not ctx.shim:
        return "SKIP", "a fix of the shim's: without it this close is an RST (see %s)" % without
    ctx.extra_env["RSTSHIM_FIX"] = "drain"
    srv = ctx.server(mode)
    c = ctx.connect(srv)
    c.sendall(UNREAD)
    expect_fin(ctx, c)
    ctx.finish_server(srv)
    ctx.expect_close("accepted", srv.addr, c.addr, flags=flags, rst=False, unread=0, pid=srv.pid)
    ctx.expect_listener(srv)
    ctx.extra_checks.append(fix_line_check("close", {"fix": "drain", "drained_bytes": drained}))
    return None


@scenario
def s_fix_drain(ctx):
    """The bytes the server left unread are drained: a FIN, no RST on the wire."""
    return fix_drain_scenario(ctx, "unread", [], REST_LEN, "unread")


@scenario
def s_fix_drain_immediate(ctx):
    """On the sniff server: a FIN, and the close is still an immediate_close
    (the bytes the shim drained were not read by the application)."""
    return fix_drain_scenario(ctx, "sniff", ["immediate_close"], HEAD_LEN + REST_LEN, "sniff")


@scenario
def s_fix_linger(ctx):
    """RSTSHIM_FIX=linger: SO_LINGER {1,0} never reaches the kernel, so the
    reply is followed by a FIN, not an RST; the setsockopt line says so."""
    if not ctx.shim:
        return "SKIP", "a fix of the shim's: without it this close is an RST (see linger0)"
    ctx.extra_env["RSTSHIM_FIX"] = "linger"
    srv = ctx.server("linger0")
    c = ctx.connect(srv)
    c.sendall(PING)
    expect_fin(ctx, c)
    ctx.finish_server(srv)
    ctx.expect_close("accepted", srv.addr, c.addr, flags=[], rst=False, unread=0)
    ctx.expect_listener(srv)
    ctx.extra_checks.append(fix_line_check("setsockopt", {"option": "SO_LINGER", "fix": "ignored",
                                                          "flags": ["linger_zero"]}))


@scenario
def s_immediate(ctx):
    """FIN at close; the RST comes only when the client sends afterwards,
    from the kernel, and no close line may claim it."""
    srv = ctx.server("immediate")
    c = ctx.connect(srv)
    ctx.finish_server(srv)
    data, how = ctx.drain(c)
    if how != "EOF" or data:
        ctx.notes.append("[kernel] client expected EOF after the immediate close, got %r %s" % (data, how))
    ctx.notes += ctx.expect_no_rst_yet("after the server's close")
    ctx.mark_late()
    c.sendall(b"late")
    if not ctx.rec.wait_rsts(lambda r: r[1] == srv.addr and r[2] == c.addr, 1):
        ctx.notes.append("[kernel] the client's late send drew no RST within 3s")
    c.close()
    ctx.late_rsts = [(srv.addr, c.addr)]
    ctx.expect_close("accepted", srv.addr, c.addr, flags=["immediate_close"], rst=False, unread=0)
    ctx.expect_listener(srv)


@scenario
def s_rcvtimeo(ctx):
    srv = ctx.server("rcvtimeo")
    c = ctx.connect(srv)
    data, how = ctx.drain(c)           # the server's FIN after the timeout
    if how != "EOF":
        ctx.notes.append("[kernel] client expected EOF, got %r %s" % (data, how))
    c.close()
    ctx.finish_server(srv)
    ctx.expect_close("accepted", srv.addr, c.addr, flags=["recv_timeout"], rst=False, unread=0)
    ctx.expect_listener(srv)

    def setsockopt_line(lines):
        so = [o for o in lines if o.get("event") == "setsockopt" and o.get("option") == "SO_RCVTIMEO"]
        if len(so) != 1:
            return ["expected one setsockopt SO_RCVTIMEO line (schema draft), got %d" % len(so)]
        o = so[0]
        bad = []
        if o.get("timeout_ms") != 100:
            bad.append("timeout_ms %r, expected 100" % (o.get("timeout_ms"),))
        if o.get("flags") != []:
            bad.append("flags %r, expected []" % (o.get("flags"),))
        return ["setsockopt SO_RCVTIMEO: %s: %s" % (", ".join(bad), H.fmt(o))] if bad else []
    ctx.extra_checks.append(setsockopt_line)


def queued_clients_reset(ctx, mode, n):
    """n clients connect and are never accepted; the server resets them all
    (its listener's close or shutdown): each client must see ECONNRESET."""
    srv = ctx.server(mode)
    clients = [ctx.connect(srv) for _ in range(n)]
    srv.send("go %d\n" % n)
    ctx.finish_server(srv)
    for c in clients:
        data, how = ctx.drain(c)
        if how != "ECONNRESET":
            ctx.notes.append("[kernel] queued client expected ECONNRESET, got %r %s" % (data, how))
        c.close()
    return srv


@scenario
def s_pending(ctx):
    N = 3
    srv = queued_clients_reset(ctx, "pending", N)
    ctx.expect_listener(srv, flags=["pending_connections"], rst=True, pending=N)

    def listen_line(lines):
        ls = [o for o in lines if o.get("event") == "listen"]
        if len(ls) != 1 or ls[0].get("backlog") != 16:
            return ["expected one listen line with backlog 16: %s" % [H.fmt(o) for o in ls]]
        acc = [H.fmt(o) for o in lines if o.get("event") == "accept"]
        return ["no accept expected: %s" % acc] if acc else []
    ctx.extra_checks.append(listen_line)


@scenario
def s_listener_shutdown(ctx):
    """shutdown(SHUT_RD) on a listener with N connections queued resets them
    there and then: a shutdown line claims the N RSTs; the close after it
    finds the queue empty."""
    N = 3
    srv = queued_clients_reset(ctx, "listener_shutdown", N)
    ctx.expect_listener_shutdown(srv, flags=["pending_connections"], rst=True, pending=N)
    ctx.expect_listener(srv)


@scenario
def s_epoll(ctx):
    """Nonblocking recv returning EAGAIN is not a receive timeout."""
    clean_scenario(ctx, "epoll")


@scenario
def s_dup(ctx):
    srv = ctx.server("dup")
    c = ctx.connect(srv)
    c.sendall(PING)
    srv.expect("CLOSED1")
    ctx.notes += ctx.expect_no_rst_yet("after closing the original while the dup is open")
    c.sendall(b"x" * REST_LEN)
    drain_expect_reset(ctx, c)
    ctx.finish_server(srv)
    ctx.expect_close("accepted", srv.addr, c.addr, flags=["shared"], rst=False, unread=0)
    expect_unread_close(ctx, srv, c)
    ctx.expect_listener(srv)


def fork_scenario(ctx, mode, child_first):
    """One process closes its copy of a forked connection (nothing sent), the
    other then closes with unread data (the RST)."""
    srv = ctx.server(mode)
    c = ctx.connect(srv)
    line = srv.expect("CLOSED1 child=")
    child = int(line.split("=")[1])
    ctx.stray_pids.append(child)
    ctx.notes += ctx.expect_no_rst_yet("after the %s closed its copy"
                                       % ("child" if child_first else "parent"))
    c.sendall(UNREAD)
    drain_expect_reset(ctx, c)
    ctx.finish_server(srv)
    first, last = (child, srv.pid) if child_first else (srv.pid, child)
    # the first: not the last reference; the shim may not know (rst null allowed by SPEC)
    ctx.expect_close("accepted", srv.addr, c.addr, flags=["shared"], rst=(False, None),
                     unread=0, pid=first)
    ctx.expect_close("accepted", srv.addr, c.addr, flags=["unread_data"], rst=True,
                     unread=REST_LEN, pid=last)
    ctx.expect_listener(srv, pid=srv.pid)


@scenario
def s_fork(ctx):
    fork_scenario(ctx, "fork", child_first=False)


@scenario
def s_fork_child_first(ctx):
    """The forking process makes the last release: it must still see the RST."""
    fork_scenario(ctx, "fork_child_first", child_first=True)


@scenario
def s_shutdown(ctx):
    """shutdown(SHUT_RDWR) with unread data sends a FIN; the close after it is the RST."""
    srv = ctx.server("shutdown")
    c = ctx.connect(srv)
    c.sendall(UNREAD)
    srv.expect("SHUT")
    data, how = ctx.drain(c)
    if how != "EOF":
        ctx.notes.append("[kernel] client expected EOF after SHUT_RDWR, got %r %s" % (data, how))
    ctx.notes += ctx.expect_no_rst_yet("after shutdown(SHUT_RDWR)")
    srv.send("go\n")
    ctx.finish_server(srv)
    c.close()
    expect_unread_close(ctx, srv, c)
    ctx.expect_listener(srv)


@scenario
def s_connect(ctx):
    """The shimmed process as the client: role "connected"."""
    lst = ctx.listen()
    proc = ctx.spawn("connect", lst.getsockname()[1])
    conn, peer = lst.accept()
    ctx.socks.append(conn)
    proc.expect("CONNECTED")
    me = "127.0.0.1:%d" % peer[1]
    ctx.server_addrs.add(me)           # its RSTs are the shim's to account for
    conn.sendall(UNREAD)
    conn.settimeout(5)
    try:
        rest = conn.recv(100)
        how = "EOF" if not rest else "data"
    except ConnectionResetError:
        how = "ECONNRESET"
    if how != "ECONNRESET":
        ctx.notes.append("[kernel] harness side expected ECONNRESET, got %s" % how)
    ctx.finish_server(proc)
    ctx.expect_close("connected", me, lst.addr, flags=["unread_data"], rst=True,
                     unread=REST_LEN, pid=proc.pid)


def exit_scenario(ctx, mode):
    srv = ctx.server(mode)
    c = ctx.connect(srv)
    time.sleep(0.3)                    # keep clear of immediate_close
    c.sendall(UNREAD)
    srv.expect("EXITING")
    drain_expect_reset(ctx, c)
    ctx.finish_server(srv)
    ctx.expect_close("accepted", srv.addr, c.addr, via="exit", flags=["unread_data"], rst=True,
                     unread=HEAD_LEN + REST_LEN, pid=srv.pid)
    ctx.expect_listener(srv, via="exit")


@scenario
def s_exit(ctx):
    exit_scenario(ctx, "exit")


@scenario
def s__exit(ctx):
    exit_scenario(ctx, "_exit")


@scenario
def s_emfile(ctx):
    srv = ctx.server("emfile")
    c = ctx.connect(srv)
    srv.send("go\n")
    limit = int(srv.expect("LIMIT ").split()[1])
    request_reply_on(ctx, c)
    ctx.finish_server(srv)
    ctx.expect_close("accepted", srv.addr, c.addr)
    ctx.expect_listener(srv)

    def accept_errors(lines):
        ls = [o for o in lines if o.get("event") == "listen"]
        errs = [o for o in lines if o.get("event") == "accept_error"]
        if not errs:
            return ["no accept_error line (5 accepts failed with EMFILE)"]
        bad = []
        lfd = ls[0].get("fd") if ls else None
        for o in errs:
            why = []
            if o.get("errno") != "EMFILE":
                why.append("errno %r" % (o.get("errno"),))
            if o.get("listen_fd") != lfd or o.get("fd") != lfd:
                why.append("listen_fd/fd %r/%r, listener is fd %r" % (o.get("listen_fd"), o.get("fd"), lfd))
            if "rlimit_nofile" in o and o["rlimit_nofile"] != limit:
                why.append("rlimit_nofile %r, the limit was %d" % (o["rlimit_nofile"], limit))
            if why:
                bad.append("accept_error: %s: %s" % (", ".join(why), H.fmt(o)))
        if len(errs) > 5:
            bad.append("%d accept_error lines for 5 failed accepts" % len(errs))
        return bad
    ctx.extra_checks.append(accept_errors)


@scenario
def s_peer_reset(ctx):
    srv = ctx.server("peer_reset")
    c = ctx.connect(srv)
    time.sleep(0.3)                    # keep clear of immediate_close
    ctx.abort(c)
    srv.expect("RESULT ECONNRESET")
    ctx.finish_server(srv)
    ctx.client_rsts = 1
    ctx.expect_close("accepted", srv.addr, c.addr, flags=[], rst=False, unread=0)
    ctx.expect_listener(srv)

    def peer_reset_line(lines):
        pr = [o for o in lines if o.get("event") == "peer_reset"]
        if len(pr) != 1:
            return ["expected one peer_reset line, got %d" % len(pr)]
        o, bad = pr[0], []
        if o.get("local") != srv.addr or o.get("peer") != c.addr:
            bad.append("local/peer %r/%r" % (o.get("local"), o.get("peer")))
        if o.get("errno") != "ECONNRESET":
            bad.append("errno %r, expected \"ECONNRESET\"" % (o.get("errno"),))
        if o.get("call") != "recv":
            bad.append("call %r, expected \"recv\"" % (o.get("call"),))
        return ["peer_reset: %s: %s" % (", ".join(bad), H.fmt(o))] if bad else []
    ctx.extra_checks.append(peer_reset_line)


@scenario
def s_close_range(ctx):
    unread_scenario(ctx, "close_range", "close_range")


@scenario
def s_dup2(ctx):
    unread_scenario(ctx, "dup2", "dup2")


@scenario
def s_fclose(ctx):
    unread_scenario(ctx, "fclose", "fclose")


@scenario
def s_exec(ctx):
    unread_scenario(ctx, "exec", "exec")

    def no_exec_failed(lines):
        return ["unexpected exec_failed: %s" % H.fmt(o) for o in lines if o.get("event") == "exec_failed"]
    ctx.extra_checks.append(no_exec_failed)


@scenario
def s_threads(ctx):
    THREADS, PER = 4, 2000
    total = THREADS * PER
    srv = ctx.server("threads", THREADS)
    cl = ctx.plain([H.SERVER, "client", str(srv.port), str(THREADS), str(PER)])
    code = cl.wait(60)
    if code is None:
        raise ScenarioError("load client did not finish within 60s")
    out = cl.readline(1)
    if code != 0:
        raise ScenarioError("load client failed (%s): %s" % (out, cl.stderr()))
    srv.send("quit\n")
    done = srv.expect("DONE served=", timeout=10)
    ctx.finish_server(srv)
    if done != "DONE served=%d" % total:
        raise ScenarioError("server says %r, expected %d" % (done, total))
    ctx.close_checks = False
    ctx.expect_listener(srv)           # only for the scenario-vs-kernel check

    def many(lines):
        bad = []
        accepts = [o for o in lines if o.get("event") == "accept"]
        closes = [o for o in lines if o.get("event") == "close" and o.get("role") == "accepted"]
        lis = [o for o in lines if o.get("event") == "close" and o.get("role") == "listener"]
        other = [o for o in lines if o.get("event") == "close" and o.get("role") not in ("accepted", "listener")]
        if len(accepts) != total:
            bad.append("%d accept lines, expected %d" % (len(accepts), total))
        if len(closes) != total:
            bad.append("%d accepted close lines, expected %d" % (len(closes), total))
        wrong = [o for o in closes if o.get("flags") != [] or o.get("rst") is not False
                 or o.get("via") != "close" or o.get("unread_bytes") != 0 or o.get("pid") != srv.pid
                 or o.get("local") != srv.addr]
        if wrong:
            bad.append("%d close lines are not clean closes, e.g. %s" % (len(wrong), H.fmt(wrong[0])))
        cookies = [o.get("cookie") for o in closes if "cookie" in o]
        if cookies and len(set(cookies)) != len(closes):
            bad.append("%d distinct cookies among %d closes" % (len(set(cookies)), len(closes)))
        tids = {o.get("tid") for o in closes}
        if len(tids) < 2:
            bad.append("all closes from %d thread(s): %s" % (len(tids), tids))
        if len(lis) != 1 or lis[0].get("flags") != [] or lis[0].get("rst") is not False \
                or lis[0].get("pending") != 0:
            bad.append("listener close lines: %s" % [H.fmt(o) for o in lis])
        bad += ["unexpected close line: %s" % H.fmt(o) for o in other[:3]]
        return bad
    ctx.extra_checks.append(many)


# -------------------------------------------------------------------- main

def main(argv):
    verbose = "-v" in argv
    bare = "--bare" in argv
    names = [a for a in argv if not a.startswith("-")]
    unknown = [n for n in names if n not in dict(SCENARIOS)]
    if unknown:
        print("unknown scenario(s): %s; known: %s" % (unknown, " ".join(n for n, _ in SCENARIOS)))
        return 2
    chosen = [(n, f) for n, f in SCENARIOS if not names or n in names]

    if os.geteuid() != 0:
        print(H.SKIP_ROOT)
        print("0 passed, 0 failed, %d skipped" % len(chosen))
        return 0
    H.reset_own_signals()
    why = H.enter_private_netns([os.path.abspath(__file__)] + argv)
    recorder = None
    if why is None:
        try:
            recorder = H.Recorder()
        except OSError as e:
            why = "AF_PACKET capture on lo refused: %s" % e
    if why:
        for n, _ in chosen:
            print("SKIP %s: %s" % (n, why))
        print("0 passed, 0 failed, %d skipped" % len(chosen))
        return 0

    missing = [p for p in ([H.SERVER] + ([] if bare else [H.SHIM])) if not os.path.exists(p)]
    passed = failed = skipped = 0
    t_all = time.monotonic()
    last_end = recorder.fence()
    for name, fn in chosen:
        if missing:
            print("FAIL %s: not built: %s (run make)" % (name, ", ".join(missing)))
            failed += 1
            continue
        stray = recorder.since(last_end)
        if stray:
            print("# note: %d RST(s) between scenarios before %s: %s" % (len(stray), name, stray))
        t0 = time.monotonic()
        ctx = skip = None

        def run():
            nonlocal ctx, skip
            ctx = H.Ctx(name, recorder, shim=not bare)
            res = fn(ctx)
            if isinstance(res, tuple) and res[0] == "SKIP":
                skip = res[1]
                return []
            return ctx.verdict()
        try:
            problems = H.problems_of(run, verbose)
        finally:
            if ctx:
                ctx.cleanup()
            last_end = recorder.fence()
        if skip is not None:
            print("SKIP %s: %s" % (name, skip))
            skipped += 1
            continue
        dt = time.monotonic() - t0
        if H.report(name, problems, " (%.2fs)" % dt if verbose else ""):
            passed += 1
        else:
            failed += 1
    recorder.close()
    if verbose:
        print("# total %.1fs" % (time.monotonic() - t_all))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
