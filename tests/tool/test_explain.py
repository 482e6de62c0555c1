#!/usr/bin/env python3
"""Tests of `rstshim explain` (build/rstshim).

Two parts:
- offline: captures written here byte by byte (pcap with the link types
  EN10MB, LINUX_SLL, LINUX_SLL2, NULL, RAW, and pcapng) against hand-made
  log lines: parsing, matching on the 4-tuple and on time, duplicate
  copies, IPv4-mapped addresses, usage errors.  Runs as any user.
- wire (root): in a private network namespace, tcpdump records `lo` (and
  `any`, which holds two copies of each segment) while a Python server runs
  under the shim; each RST must get the verdict the scenario knows is true.
  Non-root: SKIP.

Prints `PASS name` / `FAIL name: why` / `SKIP name: why`, then
`N passed, N failed, N skipped`.  test_tool.py runs it and relays its lines.
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(ROOT, "build", "rstshim")
LIB = os.path.join(ROOT, "build", "librstshim.so")
sys.path.insert(0, os.path.join(ROOT, "tests", "scenario"))

results = {"passed": 0, "failed": 0, "skipped": 0}
TMP = None  # made in main, after the re-exec into the namespace


class Skip(Exception):
    pass


def report(status, name, why=""):
    key = {"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}[status]
    results[key] += 1
    print("%s %s%s" % (status, name, (": " + why) if why else ""), flush=True)


def check(name, fn):
    try:
        why = fn()
    except Skip as s:
        report("SKIP", name, str(s))
        return
    except Exception as e:
        report("FAIL", name, "%s: %s" % (type(e).__name__, e))
        return
    report("FAIL" if why else "PASS", name, why or "")


def explain(capture, *logs, extra=()):
    p = subprocess.run([TOOL, "explain", "--json", *extra, capture, *logs],
                       capture_output=True, text=True, timeout=30)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    rsts = [l for l in lines if "verdict" in l]
    totals = [l["totals"] for l in lines if "totals" in l]
    return p, rsts, (totals[-1] if totals else None)


# ------------------------------------------------------------ offline part

T0 = 1795312682.088000  # 2026-11-21T22:38:02.088Z


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + \
        ".%06dZ" % round((t - int(t)) * 1e6)


def ip4(s):
    return socket.inet_pton(socket.AF_INET, s)


def ip6(s):
    return socket.inet_pton(socket.AF_INET6, s)


def tcp_seg(src, dst, sport, dport, flags, seq=1000, ack=0, payload=b""):
    """An IPv4 or IPv6 packet holding one TCP segment (checksums left 0)."""
    fl = 0
    for ch, bit in (("F", 1), ("S", 2), ("R", 4), ("P", 8), ("A", 16)):
        if ch in flags:
            fl |= bit
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, fl, 65535, 0, 0) + payload
    if ":" in src:
        return struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + ip6(src) + ip6(dst) + tcp
    return struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0) + \
        ip4(src) + ip4(dst) + tcp


LINK = {  # linktype: (number, header for an IP packet)
    "EN10MB": (1, lambda pkt: b"\0" * 12 + (b"\x86\xdd" if pkt[0] >> 4 == 6 else b"\x08\x00")),
    "NULL": (0, lambda pkt: struct.pack("<I", 30 if pkt[0] >> 4 == 6 else 2)),
    "RAW": (101, lambda pkt: b""),
    "LINUX_SLL": (113, lambda pkt: struct.pack("!HHH8sH", 4, 772, 6, b"", 0x86dd if pkt[0] >> 4 == 6 else 0x0800)),
    "LINUX_SLL2": (276, lambda pkt: struct.pack("!HHIHBB8s", 0x86dd if pkt[0] >> 4 == 6 else 0x0800, 0, 1, 772, 4, 6, b"")),
}


def write_pcap(path, link, packets):
    num, hdr = LINK[link]
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, num))
        for t, pkt in packets:
            frame = hdr(pkt) + pkt
            sec = int(t)
            f.write(struct.pack("<IIII", sec, round((t - sec) * 1e6), len(frame), len(frame)))
            f.write(frame)


def write_pcapng(path, packets):
    def block(btype, body):
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)
    with open(path, "wb") as f:
        f.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        f.write(block(1, struct.pack("<HHI", 1, 0, 65535)))  # EN10MB, µs
        hdr = LINK["EN10MB"][1]
        for t, pkt in packets:
            frame = hdr(pkt) + pkt
            us = round(t * 1e6)
            f.write(block(6, struct.pack("<IIIII", 0, us >> 32, us & 0xffffffff, len(frame),
                                         len(frame)) + frame))


def close_line(t, local, peer, flags, rst, unread=0, role="accepted", pid=4242, fd=5):
    return json.dumps({"ts": iso(t), "mono_ns": 1, "event": "close", "pid": pid, "tid": pid,
                       "comm": "srv", "fd": fd, "via": "close", "role": role, "local": local,
                       "peer": peer, "cookie": 77, "unread_bytes": unread, "flags": flags,
                       "rst": rst, "state": "ESTABLISHED"})


def unread_conn(srv="127.0.0.1", cli="127.0.0.1", t=T0):
    """Client cli:40000 sends 20 bytes to srv:8080, the server resets."""
    return [(t, tcp_seg(cli, srv, 40000, 8080, "S", seq=1)),
            (t + 0.0001, tcp_seg(srv, cli, 8080, 40000, "SA", seq=500, ack=2)),
            (t + 0.0002, tcp_seg(cli, srv, 40000, 8080, "A", seq=2, ack=501)),
            (t + 0.0003, tcp_seg(cli, srv, 40000, 8080, "PA", seq=2, ack=501, payload=b"x" * 20)),
            (t + 0.0100, tcp_seg(srv, cli, 8080, 40000, "RA", seq=501, ack=22))]


def fmt_addr(a, port):
    return ("[%s]:%d" if ":" in a else "%s:%d") % (a, port)


def t_link_types():
    errs = []
    for link in LINK:
        for fam in ("127.0.0.1", "::1"):
            cap = os.path.join(TMP, "l-%s-%d.pcap" % (link, len(fam)))
            log = cap + ".jsonl"
            write_pcap(cap, link, unread_conn(fam, fam))
            with open(log, "w") as f:
                f.write(close_line(T0 + 0.0099, fmt_addr(fam, 8080), fmt_addr(fam, 40000),
                                   ["unread_data"], True, unread=16) + "\n")
            p, rsts, tot = explain(cap, log)
            got = [r["verdict"] for r in rsts]
            if p.returncode != 0 or got != ["caused_by_close"] or tot["rsts"] != 1:
                errs.append("%s %s: rc %d verdicts %s %s" % (link, fam, p.returncode, got,
                                                            p.stderr.strip()))
    return "; ".join(errs) or None


def t_pcapng():
    cap = os.path.join(TMP, "ng.pcapng")
    log = cap + ".jsonl"
    write_pcapng(cap, unread_conn())
    with open(log, "w") as f:
        f.write(close_line(T0 + 0.0099, "127.0.0.1:8080", "127.0.0.1:40000",
                           ["unread_data"], True, unread=16) + "\n")
    p, rsts, tot = explain(cap, log)
    if [r["verdict"] for r in rsts] != ["caused_by_close"]:
        return "rc %d %s %s" % (p.returncode, p.stdout, p.stderr)
    lg = rsts[0]["log"]
    if lg["unread_bytes"] != 16 or lg["flags"] != ["unread_data"] or lg["pid"] != 4242:
        return "log fields: %r" % lg
    if "read the whole request" not in rsts[0].get("fix", ""):
        return "fix hint: %r" % rsts[0].get("fix")
    return None


def t_duplicates():
    cap = os.path.join(TMP, "dup.pcap")
    pk = unread_conn()
    pk.append((pk[-1][0] + 0.0004, pk[-1][1]))  # second copy (lo on AF_PACKET)
    write_pcap(cap, "LINUX_SLL", pk)
    log = os.path.join(TMP, "dup.jsonl")
    with open(log, "w") as f:
        f.write(close_line(T0 + 0.0099, "127.0.0.1:8080", "127.0.0.1:40000",
                           ["unread_data"], True, unread=16) + "\n")
    p, rsts, tot = explain(cap, log)
    if len(rsts) != 1 or tot["duplicates"] != 1 or tot["caused_by_close"] != 1:
        return "rsts %d totals %r" % (len(rsts), tot)
    return None


def t_tolerance():
    cap = os.path.join(TMP, "tol.pcap")
    write_pcap(cap, "RAW", unread_conn())
    log = os.path.join(TMP, "tol.jsonl")
    with open(log, "w") as f:  # the log's clock is 5 s ahead of the capture's
        f.write(close_line(T0 + 5.01, "127.0.0.1:8080", "127.0.0.1:40000",
                           ["unread_data"], True, unread=16) + "\n")
    _, r1, _ = explain(cap, log)
    _, r2, _ = explain(cap, log, extra=("--tolerance", "6000"))
    got = ([r["verdict"] for r in r1], [r["verdict"] for r in r2])
    return expect(got, (["not_explained"], ["caused_by_close"]), "default, --tolerance 6000")


def t_mapped_and_listener():
    """A dual-stack socket logs ::ffff:127.0.0.1; a listener closed with a
    queue resets connections it never accepted."""
    cap = os.path.join(TMP, "mapped.pcap")
    pk = unread_conn()
    t = T0 + 1
    pk += [(t, tcp_seg("127.0.0.1", "127.0.0.1", 40001, 9090, "S", seq=1)),
           (t + 0.0001, tcp_seg("127.0.0.1", "127.0.0.1", 9090, 40001, "SA", seq=9, ack=2)),
           (t + 0.0002, tcp_seg("127.0.0.1", "127.0.0.1", 40001, 9090, "A", seq=2, ack=10)),
           (t + 0.5, tcp_seg("127.0.0.1", "127.0.0.1", 9090, 40001, "RA", seq=10, ack=2))]
    write_pcap(cap, "EN10MB", pk)
    log = os.path.join(TMP, "mapped.jsonl")
    with open(log, "w") as f:
        f.write(close_line(T0 + 0.0099, "[::ffff:127.0.0.1]:8080", "[::ffff:127.0.0.1]:40000",
                           ["unread_data"], True, unread=16) + "\n")
        o = json.loads(close_line(t + 0.5, "0.0.0.0:9090", None, ["pending_connections"], True,
                                  unread=None, role="listener", fd=3))
        o["pending"] = 1
        f.write(json.dumps(o) + "\n")
        f.write("not json\n")
    p, rsts, tot = explain(cap, log)
    got = [(r["verdict"], r["log"]["role"]) for r in rsts]
    return expect(got, [("caused_by_close", "accepted"), ("caused_by_close", "listener")],
                  "verdicts") or expect(tot["log_lines"], 3, "log lines")


def t_listener_shutdown():
    """A listener's shutdown(SHUT_RD) resets its queue: its line explains the RSTs."""
    cap = os.path.join(TMP, "lshut.pcap")
    t = T0 + 2
    pk = []
    for port in (40011, 40012):
        pk += [(t, tcp_seg("127.0.0.1", "127.0.0.1", port, 9191, "S", seq=1)),
               (t + 0.0001, tcp_seg("127.0.0.1", "127.0.0.1", 9191, port, "SA", seq=9, ack=2)),
               (t + 0.0002, tcp_seg("127.0.0.1", "127.0.0.1", port, 9191, "A", seq=2, ack=10)),
               (t + 0.5, tcp_seg("127.0.0.1", "127.0.0.1", 9191, port, "RA", seq=10, ack=2))]
    # an accepted connection on the same port, reset by the server at the same moment:
    # it had left the queue (its accept line says so), the listener's shutdown is not why
    pk += [(t - 0.2, tcp_seg("127.0.0.1", "127.0.0.1", 40013, 9191, "S", seq=1)),
           (t - 0.1999, tcp_seg("127.0.0.1", "127.0.0.1", 9191, 40013, "SA", seq=9, ack=2)),
           (t - 0.1998, tcp_seg("127.0.0.1", "127.0.0.1", 40013, 9191, "A", seq=2, ack=10)),
           (t + 0.5001, tcp_seg("127.0.0.1", "127.0.0.1", 9191, 40013, "RA", seq=10, ack=2))]
    write_pcap(cap, "EN10MB", sorted(pk, key=lambda x: x[0]))
    log = os.path.join(TMP, "lshut.jsonl")
    shut = json.loads(close_line(t + 0.4999, "127.0.0.1:9191", None, ["pending_connections"],
                                 True, unread=None, role="listener", fd=3))
    for k in ("via", "unread_bytes", "peer", "state"):
        shut.pop(k)
    shut.update(event="shutdown", how="SHUT_RD", pending=2)
    accept = {"ts": iso(t - 0.1), "mono_ns": 1, "event": "accept", "pid": 4242, "tid": 4242,
              "comm": "srv", "fd": 6, "local": "127.0.0.1:9191", "peer": "127.0.0.1:40013",
              "cookie": 79, "listen_fd": 3}
    with open(log, "w") as f:
        f.write(json.dumps(accept) + "\n")
        f.write(json.dumps(shut) + "\n")
        o = json.loads(close_line(t + 0.5001, "127.0.0.1:9191", None, [], False, unread=None,
                                  role="listener", fd=3))
        o["pending"] = 0
        f.write(json.dumps(o) + "\n")
    p, rsts, tot = explain(cap, log)
    got = [(r["verdict"], r.get("log", {}).get("event")) for r in rsts]
    err = expect(got, [("caused_by_close", "shutdown")] * 2 + [("not_explained", "accept")],
                 "verdicts (the accepted connection is not the listener's)")
    if err:
        return err
    txt = subprocess.run([TOOL, "explain", cap, log], capture_output=True, text=True).stdout
    return None if "fd 3: shutdown()" in txt else "text lacks 'fd 3: shutdown()':\n" + txt


def t_after_shutdown():
    """The server shut down reading and kept the fd; the client's later data
    drew the server's RST; the server's recv got ECONNRESET (a peer_reset
    line with after_shutdown): answered after a shutdown, not after its close."""
    cap = os.path.join(TMP, "ashut.pcap")
    srv, cli, t = "127.0.0.1", "127.0.0.3", T0 + 3
    pk = [(t, tcp_seg(cli, srv, 40020, 8080, "S", seq=1)),
          (t + 0.0001, tcp_seg(srv, cli, 8080, 40020, "SA", seq=500, ack=2)),
          (t + 0.0002, tcp_seg(cli, srv, 40020, 8080, "A", seq=2, ack=501)),
          (t + 0.0100, tcp_seg(srv, cli, 8080, 40020, "FA", seq=501, ack=2)),
          (t + 0.0101, tcp_seg(cli, srv, 40020, 8080, "A", seq=2, ack=502)),
          (t + 0.0200, tcp_seg(cli, srv, 40020, 8080, "PA", seq=2, ack=502, payload=b"late")),
          (t + 0.0201, tcp_seg(srv, cli, 8080, 40020, "R", seq=502))]
    write_pcap(cap, "EN10MB", pk)
    log = os.path.join(TMP, "ashut.jsonl")
    reset = {"ts": iso(t + 0.07), "mono_ns": 1, "event": "peer_reset", "pid": 4242, "tid": 4242,
             "comm": "srv", "fd": 5, "local": "%s:8080" % srv, "peer": "%s:40020" % cli,
             "cookie": 78, "errno": "ECONNRESET", "call": "recv", "after_shutdown": True}
    with open(log, "w") as f:
        f.write(json.dumps(reset) + "\n")
        f.write(close_line(t + 0.08, "%s:8080" % srv, "%s:40020" % cli, [], False) + "\n")
    p, rsts, tot = explain(cap, log)
    got = [(r["verdict"], r.get("log", {}).get("event")) for r in rsts]
    return expect(got, [("answered_after_shutdown", "peer_reset")], "verdicts") or \
        expect(tot.get("answered_after_shutdown"), 1, "totals")


def t_capture_hints():
    cap = os.path.join(TMP, "hints.pcap")
    a = "10.0.0.1"
    pk = [(T0, tcp_seg(a, a, 41000, 7, "S", seq=1)),  # closed port
          (T0 + 0.0001, tcp_seg(a, a, 7, 41000, "RA", seq=0, ack=2)),
          (T0 + 1, tcp_seg(a, a, 9, 41001, "R", seq=77))]  # nothing before
    write_pcap(cap, "NULL", pk)
    log = os.path.join(TMP, "empty.jsonl")
    open(log, "w").close()
    p, rsts, tot = explain(cap, log)
    got = [(r["verdict"], r.get("capture")) for r in rsts]
    err = expect(got, [("not_explained", "closed_port"), ("not_explained", "no_prior_packets")],
                 "verdicts")
    if err:
        return err
    txt = subprocess.run([TOOL, "explain", cap, log], capture_output=True, text=True).stdout
    for want in ("closed port", "not explained", "  not explained                  2"):
        if want not in txt:
            return "text lacks %r:\n%s" % (want, txt)
    return None


def t_not_ip_and_nearest():
    """A frame that is not IP is no RST, whatever its payload looks like; an
    RST sent by the peer names the traced socket's event nearest in time; of
    two listener closes, the one nearest the RST."""
    cap = os.path.join(TMP, "nearest.pcap")
    srv, cli = "127.0.0.1", "127.0.0.2"
    ghost = tcp_seg("::1", "::1", 9, 41002, "R", seq=5)
    ghost = bytes([ghost[0] & 0x0f]) + ghost[1:]  # first nibble 0, under ethertype 0x9999
    frames = [(T0, b"\0" * 12 + b"\x99\x99" + ghost),
              (T0 + 4.9, b"\0" * 12 + b"\x08\x00" + tcp_seg(cli, srv, 40000, 8080, "R", seq=7))]
    t = T0 + 10
    for port in (40001, 40002):
        for dt, seg in ((0, tcp_seg(cli, srv, port, 9090, "S", seq=1)),
                        (0.0001, tcp_seg(srv, cli, 9090, port, "SA", seq=9, ack=2)),
                        (0.0002, tcp_seg(cli, srv, port, 9090, "A", seq=2, ack=10))):
            frames.append((t + dt, b"\0" * 12 + b"\x08\x00" + seg))
    frames.append((t + 1.5, b"\0" * 12 + b"\x08\x00" +
                   tcp_seg(srv, cli, 9090, 40001, "RA", seq=10, ack=2)))
    with open(cap, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for ts, frame in frames:
            sec = int(ts)
            f.write(struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(frame), len(frame)))
            f.write(frame)
    log = os.path.join(TMP, "nearest.jsonl")
    accept = json.loads(close_line(T0, "%s:8080" % srv, "%s:40000" % cli, [], False))
    accept.update(event="accept", listen_fd=3)
    for k in ("via", "role", "unread_bytes", "flags", "rst", "state"):
        accept.pop(k)
    with open(log, "w") as f:
        f.write(json.dumps(accept) + "\n")
        f.write(close_line(T0 + 5, "%s:8080" % srv, "%s:40000" % cli, [], False) + "\n")
        for fd, dt in ((3, 0.2), (4, 1.4)):  # both within --tolerance; fd 4 is nearer
            o = json.loads(close_line(t + dt, "0.0.0.0:9090", None, ["pending_connections"],
                                      True, unread=None, role="listener", fd=fd))
            o["pending"] = 2
            f.write(json.dumps(o) + "\n")
    p, rsts, tot = explain(cap, log)
    got = [(r["verdict"], r.get("log", {}).get("event"), r.get("log", {}).get("fd")) for r in rsts]
    return expect(got, [("sent_by_peer", "close", 5), ("caused_by_close", "close", 4)],
                  "verdicts (the frame that is not IP must not count)")


def t_usage():
    errs = []
    for args, rc in (([], 2), (["only.pcap"], 2), (["--tolerance", "x", "a", "b"], 2),
                     (["--bogus"], 2), ([os.path.join(TMP, "missing.pcap"), "/dev/null"], 1)):
        p = subprocess.run([TOOL, "explain", *args], capture_output=True, text=True)
        if p.returncode != rc:
            errs.append("%s: rc %d want %d" % (args, p.returncode, rc))
    return "; ".join(errs) or None


def expect(got, want, what):
    return None if got == want else "%s: got %r, want %r" % (what, got, want)


# --------------------------------------------------------------- wire part

SERVER = textwrap.dedent(r"""
    import socket, sys, threading, time
    def listener(fam, host, port):
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, port)); ls.listen(8)
        return ls
    def serve(ls, mode):
        c, _ = ls.accept()
        if mode == "unread":       # reads 4 of 20 bytes, closes: RST
            time.sleep(0.1); c.recv(4); c.close()
        elif mode == "immediate":  # closes at once: FIN; the later data draws an RST
            c.close()
        elif mode == "peer":       # the client aborts; recv sees ECONNRESET
            try:
                c.recv(100)
            except ConnectionResetError:
                pass
            c.close()
        ls.close()
    # every listener is listening before "ready": the test connects right after it
    ts = [threading.Thread(target=serve, args=(listener(fam, host, port), mode)) for fam, host, port, mode in (
        (socket.AF_INET, "127.0.0.1", 9001, "unread"),
        (socket.AF_INET, "127.0.0.1", 9002, "immediate"),
        (socket.AF_INET, "127.0.0.1", 9003, "peer"),
        (socket.AF_INET6, "::1", 9006, "unread"))]
    for t in ts: t.start()
    print("ready", flush=True)
    for t in ts: t.join()
""")

UNTRACED = textwrap.dedent(r"""
    import socket, time
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 9004)); ls.listen(8)
    print("ready", flush=True)
    c, _ = ls.accept(); time.sleep(0.1); c.recv(2); c.close()
""")


def start_tcpdump(iface, path):
    p = subprocess.Popen(["tcpdump", "-i", iface, "--immediate-mode", "-U", "-n", "-s", "256", "-w", path, "tcp"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    line = p.stderr.readline()  # "tcpdump: listening on lo, ..."
    while line.startswith("tcpdump: data link type"):
        line = p.stderr.readline()
    if "listening" not in line:
        p.kill()
        raise RuntimeError("tcpdump on %s: %s" % (iface, line.strip()))
    return p


SO_TIMESTAMPNS = 35  # also SCM_TIMESTAMPNS; Python's socket module does not name it


class PacketWriter:
    """AF_PACKET on lo written to a pcap file as is: unlike tcpdump it keeps
    both copies of every segment (outgoing and incoming)."""

    def __init__(self, path):
        import threading
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        self.sock.bind(("lo", 0))
        # the kernel's receive time, as libpcap records it: a time taken here after
        # recv() lags by however long this thread waited for the GIL and the CPU,
        # enough on a loaded 2-core machine to put the two copies of one RST more
        # than explain's 1 ms apart (seen in CI)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.settimeout(0.05)
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                frame, anc, _, _ = self.sock.recvmsg(65535, socket.CMSG_SPACE(16))
            except socket.timeout:
                continue
            stamps = [struct.unpack("qq", data[:16]) for level, kind, data in anc
                      if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS]
            if stamps:
                sec, nsec = stamps[0]
            else:
                t = time.time()
                sec, nsec = int(t), int((t - int(t)) * 1e9)
            self.f.write(struct.pack("<IIII", sec, nsec // 1000, len(frame), len(frame)))
            self.f.write(frame)

    def stop(self):
        time.sleep(0.1)
        self.stopping = True
        self.thread.join()
        self.f.close()
        self.sock.close()


def wait_ready(proc):
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError("server did not start: %r %s" % (line, proc.stderr.read()))


def connect(fam, addr, port):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((addr, port))
    return s


def wire_run(d):
    """Runs the scenario once; returns the paths of the two captures and the log."""
    log = os.path.join(d, "shim.jsonl")
    caps = {"lo": os.path.join(d, "lo.pcap"), "af_packet": os.path.join(d, "af_packet.pcap")}
    dumps = [start_tcpdump("lo", caps["lo"])]
    writer = PacketWriter(caps["af_packet"])
    env = dict(os.environ, LD_PRELOAD=LIB, RSTSHIM_LOG=log)
    srv = subprocess.Popen([sys.executable, "-c", SERVER], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    other = subprocess.Popen([sys.executable, "-c", UNTRACED], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(srv)
        wait_ready(other)
        socks = []
        for fam, addr, port in ((socket.AF_INET, "127.0.0.1", 9001),
                                (socket.AF_INET6, "::1", 9006)):
            s = connect(fam, addr, port)  # unread data at the server's close
            s.sendall(b"x" * 20)
            socks.append(s)
        s = connect(socket.AF_INET, "127.0.0.1", 9002)  # immediate close, then data
        time.sleep(0.3)
        s.sendall(b"late data")
        socks.append(s)
        s = connect(socket.AF_INET, "127.0.0.1", 9003)  # client aborts: RST to the server
        time.sleep(0.1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        s = connect(socket.AF_INET, "127.0.0.1", 9004)  # a server not under the shim
        s.sendall(b"x" * 10)
        socks.append(s)
        try:  # nothing listens on 9005
            connect(socket.AF_INET, "127.0.0.1", 9005)
        except ConnectionRefusedError:
            pass
        srv.wait(timeout=10)
        other.wait(timeout=10)
        time.sleep(0.3)
        for s in socks:
            s.close()
        time.sleep(0.3)  # tcpdump -U writes each packet as it comes
    finally:
        for p in (srv, other):
            if p.poll() is None:
                p.kill()
                p.wait()
        writer.stop()
        for p in dumps:
            p.send_signal(signal.SIGINT)
        for p in dumps:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
    return caps, log


WANT = {  # (src port, dst port) -> verdict, what must appear in the JSON line
    ("9001", None): ("caused_by_close", lambda r: r["log"]["flags"] == ["unread_data"]
                     and r["log"]["unread_bytes"] == 16),
    ("9006", None): ("caused_by_close", lambda r: r["log"]["unread_bytes"] == 16
                     and r["src"].startswith("[::1]")),
    ("9002", None): ("answered_after_close", lambda r: r["log"]["flags"] == ["immediate_close"]
                     and r["log"]["rst"] is False and r["log"]["before_rst_ms"] > 200),
    (None, "9003"): ("sent_by_peer", lambda r: r["log"]["event"] == "peer_reset"
                     and r["log"]["errno"] == "ECONNRESET"),
    ("9004", None): ("not_explained", lambda r: r.get("capture") == "reset_with_data"
                     and "log" not in r),
    ("9005", None): ("not_explained", lambda r: r.get("capture") == "closed_port"),
}


def judge(rsts):
    errs, seen = [], []
    for r in rsts:
        sp, dp = r["src"].rsplit(":", 1)[1], r["dst"].rsplit(":", 1)[1]
        key = (sp, None) if (sp, None) in WANT else (None, dp) if (None, dp) in WANT else None
        if key is None:
            errs.append("unexpected RST %s > %s (%s)" % (r["src"], r["dst"], r["verdict"]))
            continue
        seen.append(key)
        verdict, ok = WANT[key]
        if r["verdict"] != verdict:
            errs.append("%s > %s: %s, want %s" % (r["src"], r["dst"], r["verdict"], verdict))
        elif not ok(r):
            errs.append("%s > %s: details %s" % (r["src"], r["dst"], json.dumps(r)))
    for k in WANT:
        if seen.count(k) != 1:
            errs.append("RST %s seen %d times" % (k, seen.count(k)))
    return errs


WIRE = {}


def wire_setup():
    if WIRE.get("failed"):
        raise RuntimeError(WIRE["err"])
    if "err" in WIRE:
        raise Skip(WIRE["err"])
    if "caps" in WIRE:
        return WIRE
    if os.geteuid() != 0:
        WIRE["err"] = "needs root (a private network namespace and tcpdump)"
    elif not os.path.exists(LIB):
        WIRE["err"] = "build/librstshim.so not built"
    elif not shutil.which("tcpdump"):
        WIRE["err"] = "tcpdump missing (apt-get install tcpdump)"
    elif os.environ.get("RSTSHIM_SCENARIO_NETNS") != "1":
        WIRE["err"] = "not in a private network namespace"
    if "err" in WIRE:
        raise Skip(WIRE["err"])
    try:
        WIRE["caps"], WIRE["log"] = wire_run(TMP)
    except Exception as e:
        WIRE["err"] = "scenario failed: %s: %s" % (type(e).__name__, e)
        WIRE["failed"] = True
        raise
    return WIRE


def t_wire(iface):
    def fn():
        w = wire_setup()
        p, rsts, tot = explain(w["caps"][iface], w["log"])
        if p.returncode != 0:
            return "rc %d: %s" % (p.returncode, p.stderr.strip())
        errs = judge(rsts)
        if not errs and tot["rsts"] != len(WANT):
            errs.append("totals %r" % tot)
        if not errs and iface == "af_packet" and tot["duplicates"] != len(WANT):
            errs.append("duplicate copies dropped: %r" % tot)
        if os.environ.get("RSTSHIM_EXPLAIN_KEEP"):
            print("kept %s %s" % (w["caps"][iface], w["log"]))
        return "; ".join(errs) or None
    return fn


def t_wire_text():
    w = wire_setup()
    out = subprocess.run([TOOL, "explain", w["caps"]["lo"], w["log"]], capture_output=True,
                         text=True).stdout
    for want in ("caused by a close", "unread_bytes 16", "answered data after a close",
                 "sent by the peer", "closed port", "fix: "):
        if want not in out:
            return "text lacks %r:\n%s" % (want, out)
    import re
    counts = dict(re.findall(r"^  (caused by a close|answered data after a close|sent by the "
                             r"peer|not explained) +(\d+)$", out, re.M))
    return expect(counts, {"caused by a close": "2", "answered data after a close": "1",
                           "sent by the peer": "1", "not explained": "2"}, "totals")


LIVE_SERVER = textwrap.dedent(r"""
    import socket, threading, time
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 9101)); ls.listen(8)
    def cli():
        c = socket.create_connection(("127.0.0.1", 9101)); c.sendall(b"x" * 20); time.sleep(0.3)
    threading.Thread(target=cli).start()
    c, _ = ls.accept(); time.sleep(0.1); c.recv(4); c.close()
""")


def t_live():
    wire_setup()
    log = os.path.join(TMP, "live.jsonl")
    # a log that can never be opened (ENOTDIR): said once, not at every 50 ms poll
    plain = os.path.join(TMP, "plain-file")
    open(plain, "w").close()
    bad = os.path.join(plain, "x.jsonl")
    ex = subprocess.Popen([TOOL, "explain", "-i", "lo", "--duration", "2", "--json", log, bad],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ex.stderr.readline()
        if "explaining" not in line:
            return "explain -i lo: %r" % line
        env = dict(os.environ, LD_PRELOAD=LIB, RSTSHIM_LOG=log)
        subprocess.run([sys.executable, "-c", LIVE_SERVER], env=env, timeout=10)
        try:
            connect(socket.AF_INET, "127.0.0.1", 9105)
        except ConnectionRefusedError:
            pass
        out, err = ex.communicate(timeout=10)
    finally:
        if ex.poll() is None:
            ex.kill()
            ex.wait()
    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    got = [(l["verdict"], l.get("capture")) for l in lines if "verdict" in l]
    return expect(got, [("caused_by_close", None), ("not_explained", "closed_port")],
                  "live verdicts") or expect(ex.returncode, 0, "exit status") or \
        expect(err.count("cannot open"), 1, "warnings about the log that cannot be opened")


CHECKS = [
    ("explain link types EN10MB/SLL/SLL2/NULL/RAW, IPv4+IPv6", t_link_types),
    ("explain pcapng, log fields and fix", t_pcapng),
    ("explain drops the second copy of an RST", t_duplicates),
    ("explain --tolerance", t_tolerance),
    ("explain IPv4-mapped log address, listener with a queue", t_mapped_and_listener),
    ("explain: a listener's shutdown(SHUT_RD) explains its queue's RSTs", t_listener_shutdown),
    ("explain: an RST after the server's shutdown(SHUT_RDWR) and the peer's data",
     t_after_shutdown),
    ("explain capture hints: closed port, no earlier packets", t_capture_hints),
    ("explain: not-IP frames ignored; nearest event and listener close", t_not_ip_and_nearest),
    ("explain usage errors", t_usage),
    ("explain wire: tcpdump -i lo, every verdict", t_wire("lo")),
    ("explain wire: AF_PACKET pcap (two copies of each), every verdict", t_wire("af_packet")),
    ("explain wire: text output", t_wire_text),
    ("explain -i lo (live, tailing the log; an unopenable log said once)", t_live),
]


def main():
    if not os.access(TOOL, os.X_OK):
        print("FAIL build: %s missing" % TOOL)
        print("0 passed, 1 failed, 0 skipped")
        return 1
    if os.geteuid() == 0 and not shutil.which("tcpdump") and shutil.which("apt-get"):
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "ensure-deps.sh"), "test"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if os.geteuid() == 0 and shutil.which("tcpdump") and os.path.exists(LIB):
        import harness
        why = harness.enter_private_netns([os.path.abspath(__file__)] + sys.argv[1:])
        if why:
            WIRE["err"] = why
        harness.reset_own_signals()
    global TMP
    TMP = tempfile.mkdtemp(prefix="rstshim-explain-")
    only = sys.argv[1:]
    try:
        for name, fn in CHECKS:
            if only and not any(o in name for o in only):
                continue
            check(name, fn)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print("%d passed, %d failed, %d skipped" % (results["passed"], results["failed"],
                                                 results["skipped"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
