"""Scenario harness: a private network namespace, an RST recorder on `lo`,
server processes under librstshim.so, and the checks that hold the shim's JSON
against the wire.  Python 3 standard library only.  See README.md."""

import ctypes
import errno
import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SHIM = os.path.join(ROOT, "build", "librstshim.so")
SERVER = os.path.join(ROOT, "build", "tests", "scenario_server")

NETNS_MARK = "RSTSHIM_SCENARIO_NETNS"
SKIP_ROOT = "SKIP: scenario tests need root (AF_PACKET capture and a private network namespace)"

HEAD_LEN = 4      # must match server.c
REST_LEN = 96

CLOSE_FLAGS = {"unread_data", "linger_zero", "immediate_close", "recv_timeout",
               "pending_connections", "shared", "tcp_linger2"}
VIAS = {"close", "close_range", "dup2", "fclose", "exec", "exit"}
ROLES = {"accepted", "connected", "listener"}
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class ScenarioError(Exception):
    """A scenario could not be carried out (not a verdict on the shim)."""


# --------------------------------------------------------------- namespace

def reset_own_signals():
    """Undo dispositions inherited from a shell without job control."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _lo_up_ioctl():
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def enter_private_netns(argv):
    """Return normally inside a fresh network namespace with lo up, or
    return a string saying why that is impossible here (caller skips).
    When `unshare` exists this re-execs the script under `unshare -n`."""
    if os.environ.get(NETNS_MARK) != "1":
        env = dict(os.environ)
        env[NETNS_MARK] = "1"
        unshare = shutil.which("unshare")
        if unshare:
            probe = subprocess.run([unshare, "-n", "true"], capture_output=True)
            if probe.returncode == 0:
                os.execve(unshare, [unshare, "-n", "--", sys.executable] + argv, env)
        # no usable unshare(1): do it in-process (before any thread starts)
        libc = ctypes.CDLL(None, use_errno=True)
        CLONE_NEWNET = 0x40000000
        if libc.unshare(CLONE_NEWNET) != 0:
            return "unshare(CLONE_NEWNET) failed: %s" % os.strerror(ctypes.get_errno())
        os.environ[NETNS_MARK] = "1"
    try:
        if os.readlink("/proc/self/ns/net") == os.readlink("/proc/1/ns/net"):
            return "still in the initial network namespace after unshare"
    except OSError:
        pass
    ip = shutil.which("ip")
    if ip:
        r = subprocess.run([ip, "link", "set", "lo", "up"], capture_output=True)
        if r.returncode != 0:
            _lo_up_ioctl()
    else:
        _lo_up_ioctl()
    return None


# ---------------------------------------------------------------- recorder

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33


class Recorder:
    """Records every RST segment and fence marker that leaves through `lo`."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self._attach_filter()
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind(("lo", ETH_P_ALL))
        self.sock.settimeout(0.1)
        self.cond = threading.Condition()
        self.rsts = []          # (mono, src, dst, tcp_flags)
        self.markers = set()
        self.drops = 0
        self._stop = False
        self._fence_no = 0
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.sink.setblocking(False)
        self.thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self.thread.start()

    def _attach_filter(self):
        LD_W_ABS, LD_H_ABS, LD_B_ABS = 0x20, 0x28, 0x30
        LDX_B_MSH, LD_B_IND = 0xB1, 0x50
        JEQ, JSET, RET = 0x15, 0x45, 0x06
        SKF_AD_PKTTYPE = 0xFFFFF004            # SKF_AD_OFF (-0x1000) + 4
        ACCEPT, DROP = "accept", "drop"
        # (label, code, jt, jf, k); jt/jf name labels; resolved to offsets below
        prog = [
            ("start", LD_W_ABS, None, None, SKF_AD_PKTTYPE),
            (None, JEQ, None, DROP, PACKET_OUTGOING),
            (None, LD_H_ABS, None, None, 12),
            (None, JEQ, None, "v6", 0x0800),
            (None, LD_B_ABS, None, None, 14 + 9),
            (None, JEQ, "v4tcp", None, 6),
            (None, JEQ, ACCEPT, DROP, 17),
            ("v4tcp", LDX_B_MSH, None, None, 14),
            (None, LD_B_IND, None, None, 14 + 13),
            (None, JSET, ACCEPT, DROP, 0x04),
            ("v6", JEQ, None, DROP, 0x86DD),
            (None, LD_B_ABS, None, None, 14 + 6),
            (None, JEQ, "v6tcp", None, 6),
            (None, JEQ, ACCEPT, DROP, 17),
            ("v6tcp", LD_B_ABS, None, None, 14 + 40 + 13),
            (None, JSET, ACCEPT, DROP, 0x04),
            (ACCEPT, RET, None, None, 0x40000),
            (DROP, RET, None, None, 0),
        ]
        where = {lab: i for i, (lab, *_rest) in enumerate(prog) if lab}
        raw = b""
        for i, (_lab, code, jt, jf, k) in enumerate(prog):
            jt_off = where[jt] - i - 1 if jt else 0
            jf_off = where[jf] - i - 1 if jf else 0
            raw += struct.pack("HBBI", code, jt_off, jf_off, k)
        self._filter_buf = ctypes.create_string_buffer(raw, len(raw))
        fprog = struct.pack("HL", len(prog), ctypes.addressof(self._filter_buf))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    @staticmethod
    def _addr(family, raw, port):
        if family == socket.AF_INET6:
            return "[%s]:%d" % (socket.inet_ntop(family, raw), port)
        return "%s:%d" % (socket.inet_ntop(family, raw), port)

    def _parse(self, pkt):
        if len(pkt) < 14:
            return
        etype = struct.unpack_from("!H", pkt, 12)[0]
        if etype == 0x0800 and len(pkt) >= 34:
            ihl = (pkt[14] & 0x0F) * 4
            proto = pkt[23]
            fam, src, dst, l4 = socket.AF_INET, pkt[26:30], pkt[30:34], 14 + ihl
        elif etype == 0x86DD and len(pkt) >= 54:
            proto = pkt[20]
            fam, src, dst, l4 = socket.AF_INET6, pkt[22:38], pkt[38:54], 54
        else:
            return
        if proto == 6 and len(pkt) >= l4 + 14:
            sport, dport = struct.unpack_from("!HH", pkt, l4)
            flags = pkt[l4 + 13]
            if flags & 0x04:
                with self.cond:
                    self.rsts.append((time.monotonic(), self._addr(fam, src, sport),
                                      self._addr(fam, dst, dport), flags))
                    self.cond.notify_all()
        elif proto == 17 and len(pkt) >= l4 + 8:
            payload = pkt[l4 + 8:]
            if payload.startswith(b"RSTSHIM-FENCE-"):
                with self.cond:
                    self.markers.add(payload.decode("ascii", "replace"))
                    self.cond.notify_all()

    def _run(self):
        while not self._stop:
            try:
                pkt, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                if self._stop:
                    return
                raise
            if addr[2] != PACKET_OUTGOING:
                continue
            self._parse(pkt)

    def _poll_drops(self):
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        _packets, drops = struct.unpack("II", raw)   # reading resets them
        self.drops += drops
        return drops

    def fence(self, timeout=5.0):
        """Send a marker datagram and wait until the recorder has seen it:
        every segment sent before it has then been recorded.  Returns the
        number of RSTs recorded so far (an index into self.rsts)."""
        self._fence_no += 1
        token = "RSTSHIM-FENCE-%d-%d" % (os.getpid(), self._fence_no)
        deadline = time.monotonic() + timeout
        self.sink.sendto(token.encode(), self.sink.getsockname())
        with self.cond:
            while token not in self.markers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ScenarioError("fence marker not seen by the recorder within %.0fs" % timeout)
                self.cond.wait(left)
            n = len(self.rsts)
        try:
            while True:
                self.sink.recv(256)
        except OSError:
            pass
        if self._poll_drops():
            raise ScenarioError("the recorder dropped packets: the wire verdict is unreliable")
        return n

    def wait_rsts(self, pred, count, timeout=3.0):
        """Wait (bounded) until at least `count` recorded RSTs satisfy pred."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(1 for r in self.rsts if pred(r)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def since(self, start, end=None):
        with self.cond:
            return list(self.rsts[start:end])

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()
        self.sink.close()


# ------------------------------------------------------------------ processes

def _clean_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RSTSHIM_") and k != "LD_PRELOAD"}
    return env


class Proc:
    """A child process with line-oriented stdout and bounded reads."""

    def __init__(self, argv, env, stdin=True):
        self.errfile = tempfile.TemporaryFile()
        self.p = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=self.errfile, close_fds=True)
        self.pid = self.p.pid
        self.buf = b""
        self.lines = []

    def readline(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScenarioError("pid %d said nothing within %.1fs (stderr: %s)"
                                    % (self.pid, timeout, self.stderr()))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise ScenarioError("pid %d closed stdout (exit %s; stderr: %s)"
                                        % (self.pid, self.p.poll(), self.stderr()))
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.decode("utf-8", "replace")
        self.lines.append(line)
        return line

    def expect(self, prefix, timeout=5.0):
        line = self.readline(timeout)
        if not line.startswith(prefix):
            raise ScenarioError("expected %r from the server, got %r" % (prefix, line))
        return line

    def send(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.flush()

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read().decode("utf-8", "replace").strip()[-500:]

    def wait(self, timeout):
        """Wait for a normal exit; returns the exit code or None if still running."""
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """End the process by its pid: SIGTERM, then SIGKILL."""
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(2.0) is None:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        for f in (self.p.stdin, self.p.stdout):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        self.errfile.close()


def kill_stray(pid):
    """SIGKILL a grandchild we know by pid if it is still one of ours."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"scenario_server" not in f.read():
                return
        os.kill(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass


# ----------------------------------------------------------------- log lines

def problems_of(run, verbose=False):
    """Run one case: run() returns its problems; what it raises becomes one."""
    try:
        return run()
    except ScenarioError as e:
        return ["could not run: %s" % e]
    except OSError as e:
        return ["could not run (client error): %r" % e]
    except Exception as e:  # a bug in the suite: report it, go on
        problems = ["harness error: %s" % "".join(
            traceback.format_exception_only(type(e), e)).strip()]
        if verbose:
            traceback.print_exc()
        return problems


def report(name, problems, detail=""):
    """Print a case's PASS or FAIL line; True if it passed."""
    if problems:
        print("FAIL %s: %s" % (name, " | ".join(problems)))
    else:
        print("PASS %s%s" % (name, detail))
    sys.stdout.flush()
    return not problems


def fmt(line):
    return json.dumps({k: v for k, v in line.items() if not k.startswith("_")},
                      separators=(",", ":"))


def read_logs(logdir, problems):
    """Parse every line of every log file; non-JSON, torn or mis-attributed
    lines are problems.  Returns the lines in time order."""
    out = []
    for name in sorted(os.listdir(logdir)):
        m = re.match(r"^log\.(\d+)\.jsonl$", name)
        if not m:
            problems.append("unexpected file in the log dir: %s" % name)
            continue
        with open(os.path.join(logdir, name), "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            problems.append("%s does not end with a newline (torn line)" % name)
        for no, raw in enumerate(data.split(b"\n")[:-1] if data else [], 1):
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                problems.append("%s:%d is not JSON (%s): %r" % (name, no, e, raw[:300]))
                continue
            if not isinstance(obj, dict):
                problems.append("%s:%d is not a JSON object: %r" % (name, no, raw[:300]))
                continue
            obj["_file"] = name
            obj["_filepid"] = int(m.group(1))
            obj["_seq"] = len(out)
            out.append(obj)

    def key(o):
        mono = o.get("mono_ns")
        return (0, mono, o["_seq"]) if isinstance(mono, int) else (1, str(o.get("ts")), o["_seq"])
    out.sort(key=key)
    return out


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def validate_line(o):
    """Schema checks from SPEC.md / docs-schema-draft.md for one line."""
    p = []
    for k in ("ts", "event", "pid", "tid", "fd"):
        if k not in o:
            p.append("missing %r" % k)
    if "ts" in o and not (isinstance(o["ts"], str) and TS_RE.match(o["ts"])):
        p.append("bad ts %r" % (o.get("ts"),))
    for k in ("pid", "tid", "fd"):
        if k in o and not _is_int(o[k]):
            p.append("%s is not an integer" % k)
    if "pid" in o and o["pid"] != o["_filepid"]:
        p.append("pid %r written to %s" % (o["pid"], o["_file"]))
    ev = o.get("event")
    need = {
        "listen": ("local", "backlog"),
        "accept": ("local", "peer", "listen_fd"),
        "connect": ("local", "peer"),
        "setsockopt": ("option", "flags"),
        "close": ("via", "role", "local", "peer", "unread_bytes", "flags", "rst"),
        "peer_reset": ("local", "peer"),
        "accept_error": ("listen_fd", "errno"),
        "shutdown": ("how", "role", "local", "pending", "flags", "rst"),
        "config_error": (),
        "exec_failed": (),
    }.get(ev)
    if need is None:
        p.append("unknown event %r" % (ev,))
        need = ()
    for k in need:
        if k not in o:
            p.append("missing %r" % k)
    if ev == "close":
        if o.get("via") not in VIAS:
            p.append("bad via %r" % (o.get("via"),))
        if o.get("role") not in ROLES:
            p.append("bad role %r" % (o.get("role"),))
        fl = o.get("flags")
        if not isinstance(fl, list) or any(f not in CLOSE_FLAGS for f in fl) or len(set(fl)) != len(fl):
            p.append("bad flags %r" % (fl,))
        if o.get("rst") not in (True, False, None):
            p.append("bad rst %r" % (o.get("rst"),))
        ub = o.get("unread_bytes")
        if ub is not None and not _is_int(ub):
            p.append("bad unread_bytes %r" % (ub,))
        if o.get("role") == "listener":
            if "pending" not in o:
                p.append("listener close without 'pending'")
            if o.get("peer") is not None:
                p.append("listener close with a peer")
        if isinstance(fl, list) and "unread_data" in fl and not (_is_int(ub) and ub > 0):
            p.append("unread_data flag but unread_bytes %r" % (ub,))
    if ev == "setsockopt" and o.get("option") == "SO_LINGER":
        for k in ("onoff", "linger"):
            if k not in o:
                p.append("SO_LINGER line without %r" % k)
    if ev == "accept_error" and not isinstance(o.get("errno"), str):
        p.append("errno is not symbolic")
    return ["%s: %s" % ("; ".join(p), fmt(o))] if p else []


# ------------------------------------------------------------- expectations

class Close:
    """One expected close line.  rst may be a tuple of allowed values."""

    def __init__(self, role, local, peer, via="close", flags=(), rst=False,
                 unread=0, pending=None, pid=None, not_pid=None, event="close"):
        self.event = event  # "shutdown": a listener's shutdown(SHUT_RD), no via
        self.role, self.local, self.peer = role, local, peer
        self.via, self.flags, self.rst = via, sorted(flags), rst
        self.unread, self.pending, self.pid, self.not_pid = unread, pending, pid, not_pid

    def key(self):
        return (self.event, self.role, self.local, self.peer)

    def rst_allowed(self):
        return self.rst if isinstance(self.rst, tuple) else (self.rst,)

    def causes_rst(self):
        return True in self.rst_allowed()

    def describe(self):
        return "%s %s %s->%s via %s flags %s rst %s" % (
            self.role, self.event, self.local, self.peer, self.via, self.flags,
            "/".join(json.dumps(r) for r in self.rst_allowed()))

    def compare(self, o):
        bad = []
        if o.get("via") != self.via and self.event == "close":
            bad.append("via %r, expected %r" % (o.get("via"), self.via))
        fl = o.get("flags")
        if not isinstance(fl, list) or sorted(fl) != self.flags:
            bad.append("flags %s, expected %s" % (json.dumps(fl), json.dumps(self.flags)))
        if o.get("rst", "missing") not in self.rst_allowed() or not isinstance(o.get("rst", 0), (bool, type(None))):
            bad.append("rst %s, expected %s" % (json.dumps(o.get("rst")),
                                                  "/".join(json.dumps(r) for r in self.rst_allowed())))
        if self.unread is not None and o.get("unread_bytes") != self.unread:
            bad.append("unread_bytes %s, expected %d" % (json.dumps(o.get("unread_bytes")), self.unread))
        if self.pending is not None and o.get("pending") != self.pending:
            bad.append("pending %s, expected %d" % (json.dumps(o.get("pending")), self.pending))
        if self.pid is not None and o.get("pid") != self.pid:
            bad.append("pid %s, expected %d" % (o.get("pid"), self.pid))
        if self.not_pid is not None and o.get("pid") == self.not_pid:
            bad.append("pid %s, expected another process" % o.get("pid"))
        return bad


def close_key(o):
    peer = o.get("peer") if o.get("role") != "listener" else None
    return (o.get("event"), o.get("role"), o.get("local"), peer)


# Lines that release a socket or reset connections: a close, or a listener's
# shutdown(SHUT_RD), which resets its queue as a close would.
RELEASES = ("close", "shutdown")


def match_closes(lines, expected):
    """(b)+(c): every close line must be an expected one, field by field.
    Lines with the same (role, local, peer) are matched in time order."""
    problems = []
    got = {}
    for o in lines:
        if o.get("event") in RELEASES:
            got.setdefault(close_key(o), []).append(o)
    want = {}
    for e in expected:
        want.setdefault(e.key(), []).append(e)
    for k, es in want.items():
        gs = got.get(k, [])
        for i, e in enumerate(es):
            if i >= len(gs):
                problems.append("missing close line: expected %s" % e.describe())
                continue
            bad = e.compare(gs[i])
            if bad:
                problems.append("%s: %s; got %s" % (e.describe().split(" via")[0],
                                                   ", ".join(bad), fmt(gs[i])))
        for o in gs[len(es):]:
            problems.append("unexpected extra close line: %s" % fmt(o))
    for k, gs in got.items():
        if k not in want:
            for o in gs:
                problems.append("unexpected close line: %s" % fmt(o))
    return problems


def claim_rsts(closes, wire, server_addrs, what):
    """(a): the RSTs that `closes` say they cause (rst true) against the RSTs
    the server side put on the wire.  `closes` are log lines or Close
    expectations (then `what` = "expected")."""
    problems = []
    left = Counter((src, dst) for (_t, src, dst, _f) in wire if src in server_addrs)

    def rst_of(c):
        if isinstance(c, Close):
            return c.causes_rst(), c.role, c.local, c.peer, c.pending or 0, c.describe()
        return c.get("rst") is True, c.get("role"), c.get("local"), c.get("peer"), c.get("pending") or 0, fmt(c)

    listeners = []
    claimed = set()
    for c in closes:
        rst, role, local, peer, pending, desc = rst_of(c)
        if not rst:
            continue
        if role == "listener":
            listeners.append((local, pending, desc))
            continue
        if left[(local, peer)] > 0:
            left[(local, peer)] -= 1
            claimed.add((local, peer))
        else:
            problems.append("%s close says rst true, but no RST %s -> %s on the wire: %s"
                            % (what, local, peer, desc))
    for local, pending, desc in listeners:
        mine = [k for k, n in left.items() if n > 0 and k[0] == local]
        got = sum(left[k] for k in mine)
        if got != pending or pending == 0:
            problems.append("%s listener close claims %d RSTs (pending), the wire has %d from %s: %s"
                            % (what, pending, got, local, desc))
        for k in mine:
            left[k] = 0
    for (src, dst), n in left.items():
        # A connection reset by its close may draw more RSTs on the same
        # 4-tuple: the kernel answers the peer's data still in flight (a
        # client in the middle of a large send).  The set of reset
        # connections is what must match, not the count of segments.
        if n > 0 and (src, dst) not in claimed:
            owner = [c for c in closes if not isinstance(c, Close) and c.get("event") == "close"
                     and c.get("local") == src and c.get("peer") == dst]
            problems.append("%d RST(s) %s -> %s on the wire that no %s close claims%s"
                            % (n, src, dst, what,
                               (" (close line: %s)" % fmt(owner[-1])) if owner else ""))
    return problems


# -------------------------------------------------------------- the context

class ClientSocket(socket.socket):
    """A socket that can carry its own address string (.addr)."""


class Ctx:
    """What a scenario function gets: servers, clients, fences, expectations."""

    def __init__(self, name, recorder, shim):
        self.name, self.rec, self.shim = name, recorder, shim
        self.logdir = tempfile.mkdtemp(prefix="rstshim-scn-%s-" % name.strip("_"))
        self.procs, self.socks, self.stray_pids = [], [], []
        self.server_addrs = set()
        self.expected = []          # Close expectations
        self.late_rsts = None       # list of (src, dst) expected after split
        self.split = None           # recorder index where "late" RSTs begin
        self.client_rsts = None     # expected count of client-side RSTs
        self.extra_checks = []      # callables(lines) -> problems
        self.close_checks = True    # False: the scenario checks closes itself
        self.notes = []
        self.extra_env = {}         # more environment for the shimmed processes
        self.start = recorder.fence()

    # servers
    def env(self):
        env = _clean_env()
        if self.shim:
            env["LD_PRELOAD"] = SHIM
            env["RSTSHIM_LOG"] = os.path.join(self.logdir, "log.%p.jsonl")
            env["RSTSHIM_EVENTS"] = "all"
            env.update(self.extra_env)
        return env

    def spawn(self, mode, *args, argv=None):
        """Start a shimmed process that does not listen (see server()).
        RSTSHIM_SCENARIO_WRAP (e.g. "valgrind --log-file=...") is put in front
        of the command: tests/hardening runs the scenario servers under valgrind."""
        wrap = os.environ.get("RSTSHIM_SCENARIO_WRAP", "").split()
        p = Proc(wrap + (argv or [SERVER, mode] + [str(a) for a in args]), self.env())
        self.procs.append(p)
        return p

    def server(self, mode, *args, family=socket.AF_INET, argv=None):
        """Start a shimmed server, read its PORT line; its address joins the
        shim-side addresses (server_addrs) whose RSTs the checks account for."""
        p = self.spawn(mode, *args, argv=argv)
        line = p.expect("PORT ")
        port = int(line.split()[1])
        host = "[::1]" if family == socket.AF_INET6 else "127.0.0.1"
        p.addr = "%s:%d" % (host, port)
        p.port, p.family = port, family
        self.server_addrs.add(p.addr)
        return p

    def plain(self, argv):
        """A helper process without the shim (e.g. the load client)."""
        p = Proc(argv, _clean_env(), stdin=False)
        self.procs.append(p)
        return p

    def finish_server(self, p, timeout=10.0):
        code = p.wait(timeout)
        if code is None:
            raise ScenarioError("server pid %d did not exit within %.0fs (stderr: %s)"
                                % (p.pid, timeout, p.stderr()))
        if code != 0:
            raise ScenarioError("server exited %d (stderr: %s)" % (code, p.stderr()))

    # clients
    def connect(self, server, timeout=5.0):
        host = "::1" if server.family == socket.AF_INET6 else "127.0.0.1"
        s = ClientSocket(server.family, socket.SOCK_STREAM)
        self.socks.append(s)
        s.settimeout(timeout)
        s.connect((host, server.port))
        name = s.getsockname()
        s.addr = ("[%s]:%d" if server.family == socket.AF_INET6 else "%s:%d") % (name[0], name[1])
        return s

    def listen(self):
        """A listener of the harness's own (for a shimmed client)."""
        s = ClientSocket(socket.AF_INET, socket.SOCK_STREAM)
        self.socks.append(s)
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        s.settimeout(5.0)
        s.addr = "127.0.0.1:%d" % s.getsockname()[1]
        return s

    @staticmethod
    def drain(s, timeout=5.0):
        """Read until EOF or error; returns (bytes, errno name or 'EOF')."""
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError as e:
                return data, errno.errorcode.get(e.errno, str(e.errno))
            if not chunk:
                return data, "EOF"
            data += chunk
        raise ScenarioError("client: neither EOF nor error within %.0fs" % timeout)

    @staticmethod
    def abort(s):
        """Close with SO_LINGER {1,0}: the client sends an RST."""
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    # wire
    def fence(self):
        return self.rec.fence()

    def server_rsts(self, start=None, end=None):
        start = self.start if start is None else start
        return [r for r in self.rec.since(start, end) if r[1] in self.server_addrs]

    def mark_late(self):
        """RSTs from here on are not caused by any close (the scenario says
        which ones to expect with self.late_rsts)."""
        self.split = self.fence()

    def expect_no_rst_yet(self, why):
        n = self.fence()
        rs = self.server_rsts(self.start, n)
        if rs:
            return ["%s: expected no RST yet, the wire has %s" % (why, ["%s -> %s" % (r[1], r[2]) for r in rs])]
        return []

    # expectations
    def expect_close(self, *a, **kw):
        self.expected.append(Close(*a, **kw))

    def expect_listener_shutdown(self, server, flags=(), rst=False, pending=0):
        self.expected.append(Close("listener", server.addr, None, via=None, flags=flags,
                                   rst=rst, unread=None, pending=pending, event="shutdown"))

    def expect_listener(self, server, via="close", flags=(), rst=False, pending=0, **kw):
        self.expected.append(Close("listener", server.addr, None, via=via, flags=flags,
                                   rst=rst, unread=None, pending=pending, **kw))

    # verdict
    def verdict(self):
        problems = list(self.notes)
        end = self.fence()
        split = self.split if self.split is not None else end
        wire = self.rec.since(self.start, split)
        late = self.rec.since(split, end)
        everything = self.rec.since(self.start, end)
        if os.environ.get("RSTSHIM_SCENARIO_DEBUG"):
            print("# %s wire RSTs: %s late: %s" % (self.name,
                  ["%s->%s" % (r[1], r[2]) for r in wire], ["%s->%s" % (r[1], r[2]) for r in late]))
        others = [r for r in everything if r[1] not in self.server_addrs and r[2] not in self.server_addrs]
        if others:
            problems.append("RSTs on the wire between unrelated addresses: %s" % others)
        # The scenario's own ground truth against the kernel (a test bug if wrong).
        problems += ["[scenario vs kernel] " + p for p in
                     claim_rsts(self.expected, wire, self.server_addrs, "expected")]
        late_srv = Counter((r[1], r[2]) for r in late if r[1] in self.server_addrs)
        want_late = Counter(self.late_rsts or [])
        if late_srv != want_late:
            problems.append("after the closes the wire has RSTs %s, expected %s"
                            % (dict(late_srv), dict(want_late)))
        if self.client_rsts is not None:
            n = sum(1 for r in everything if r[2] in self.server_addrs)
            if n != self.client_rsts:
                problems.append("client side sent %d RSTs, expected %d" % (n, self.client_rsts))
        if not self.shim:
            return problems
        lines = read_logs(self.logdir, problems)
        for o in lines:
            problems += validate_line(o)
        known = {p.pid for p in self.procs} | set(self.stray_pids)
        for o in lines:
            if o.get("pid") not in known:
                problems.append("line from pid %s, which is no process of this scenario: %s"
                                % (o.get("pid"), fmt(o)))
        closes = [o for o in lines if o.get("event") in RELEASES]
        # (a) the shim's rst:true closes (and listener shutdowns) against the wire
        problems += claim_rsts(closes, wire, self.server_addrs, "logged")
        # (b) + (c)
        if self.close_checks:
            problems += match_closes(lines, self.expected)
            problems += self._cross_checks(lines)
        for chk in self.extra_checks:
            problems += chk(lines)
        return problems

    def _cross_checks(self, lines):
        """accept / listen lines that belong to the expected closes."""
        p = []
        for e in self.expected:
            if e.role == "accepted":
                acc = [o for o in lines if o.get("event") == "accept"
                       and o.get("local") == e.local and o.get("peer") == e.peer]
                if len(acc) != 1:
                    p.append("expected one accept line %s <- %s, got %d" % (e.local, e.peer, len(acc)))
                    continue
                first = [o for o in lines if o.get("event") == "close" and close_key(o) == e.key()]
                if first and "cookie" in acc[0] and "cookie" in first[0] \
                        and acc[0]["cookie"] != first[0]["cookie"]:
                    p.append("cookie differs between accept and close: %s / %s" % (fmt(acc[0]), fmt(first[0])))
            elif e.role == "connected":
                con = [o for o in lines if o.get("event") == "connect"
                       and o.get("local") == e.local and o.get("peer") == e.peer]
                if len(con) != 1:
                    p.append("expected one connect line %s -> %s, got %d" % (e.local, e.peer, len(con)))
            elif e.role == "listener":
                lis = [o for o in lines if o.get("event") == "listen" and o.get("local") == e.local]
                if len(lis) != 1:
                    p.append("expected one listen line for %s, got %d" % (e.local, len(lis)))
        return list(dict.fromkeys(p))

    def cleanup(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        for p in self.procs:
            p.stop()
        for pid in self.stray_pids:
            kill_stray(pid)
        if os.environ.get("RSTSHIM_SCENARIO_KEEP"):
            print("# %s: logs kept in %s" % (self.name, self.logdir))
        else:
            shutil.rmtree(self.logdir, ignore_errors=True)
