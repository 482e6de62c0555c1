"""Shared pieces of the hardening runners: running hosts with a bounded time
(every process ended by its pid), reading logs line by line, counting
results, and the model check of the threaded test."""
import bisect
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
SHIM = os.path.join(BUILD, "librstshim.so")
HDIR = os.path.join(BUILD, "hardening")
HOST = os.path.join(HDIR, "host")
HOST_STATIC = os.path.join(HDIR, "host_static")
TOOL = os.path.join(BUILD, "rstshim")


def run_tests(tests, results, needed, make_target, tmp_prefix, tmp_mode=None):
    """A runner's main: with every file in `needed` built, call each test_*
    function of `tests` (the runner's globals(); words on the command line pick
    by substring) with a fresh directory of its own, under one temporary
    directory (chmod to tmp_mode if given).  Returns results.summary()."""
    missing = [f for f in needed if not os.path.exists(f)]
    if missing:
        results.check("build", False, f"missing {missing}: run `make {make_target}`")
        return results.summary()
    only = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix=tmp_prefix) as tmp:
        if tmp_mode is not None:
            os.chmod(tmp, tmp_mode)
        for name, fn in list(tests.items()):
            if not name.startswith("test_") or not callable(fn):
                continue
            if only and not any(o in name for o in only):
                continue
            sub = os.path.join(tmp, name)
            os.mkdir(sub)
            try:
                fn(sub)
            except Exception as e:  # a crash in a check is a failure, not an abort
                results.check(name, False, f"{type(e).__name__}: {e}")
    return results.summary()


class Results:
    def __init__(self, label):
        self.label = label
        self.passed = self.failed = self.skipped = 0

    def check(self, name, ok, why=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}", flush=True)
        else:
            self.failed += 1
            why = str(why)
            if len(why) > 1500:
                why = why[:1500] + "..."
            print(f"FAIL {name}: {why}", flush=True)
        return ok

    def skip(self, name, why):
        self.skipped += 1
        print(f"SKIP {name}: {why}", flush=True)

    def summary(self):
        print(f"{self.label}: {self.passed} passed, {self.failed} failed, {self.skipped} skipped",
              flush=True)
        return 1 if self.failed else 0


class Ran:
    def __init__(self, returncode, stdout, stderr, timed_out, pid):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        self.timed_out, self.pid = timed_out, pid

    def __repr__(self):
        return (f"exit={self.returncode} timed_out={self.timed_out} "
                f"stdout={self.stdout[-600:]!r} stderr={self.stderr[-600:]!r}")


def clean_env(extra=None, preload=True):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RSTSHIM_") and not k.endswith("SAN_OPTIONS")}
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload if isinstance(preload, str) else SHIM
    env.update(extra or {})
    return env


def run(args, env=None, preload=True, timeout=60, stdin=subprocess.DEVNULL, stdout=None,
        stderr=None, cwd=None, raw_env=None):
    """Runs args; on timeout the process (and its process group) is killed by
    its pid.  Returns Ran."""
    full_env = raw_env if raw_env is not None else clean_env(env, preload)
    p = subprocess.Popen(args, env=full_env, stdin=stdin,
                         stdout=stdout if stdout is not None else subprocess.PIPE,
                         stderr=stderr if stderr is not None else subprocess.PIPE,
                         cwd=cwd, start_new_session=True)
    timed_out = False
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(p.pid)
        out, err = p.communicate()
    return Ran(p.returncode, out or b"", err or b"", timed_out, p.pid)


def kill_group(pid):
    """Ends a process we started (and the session it leads) by its id."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass


def read_log(path):
    """(lines, problems): every line must be one whole JSON object ending in \\n."""
    lines, problems = [], []
    if not os.path.exists(path):
        return lines, problems
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        problems.append(f"{path}: last line not terminated: {data[-120:]!r}")
    for n, raw in enumerate(data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")):
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            lines.append(obj)
        except ValueError as e:
            problems.append(f"{os.path.basename(path)} line {n + 1}: {e}: {raw[:200]!r}")
    return lines, problems


def logs_by_pid(pattern_glob):
    out = {}
    for f in glob.glob(pattern_glob):
        try:
            pid = int(f.rsplit(".", 2)[-2])
        except ValueError:
            continue
        out[pid] = f
    return out


# ---------------------------------------------------------------- the model
#
# Forks: a fork by any thread hands every socket then open to a child that
# _exits at once.  The shim marks those sockets shared (in the parent's
# atfork handler) and settles each later release by asking the kernel
# (NETLINK_SOCK_DIAG): still held by the child -> flags [shared], rst false;
# gone -> the verdict of a last release; both with "verified": true.  From
# the journaled times each close is classified: marked yes/no/maybe, and
# whether a child may still have held the socket at the close.

STATE_CLOSE = 7
STATE_NAMES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
               6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
               11: "CLOSING"}


class Forks:
    def __init__(self, forks):
        self.forks = sorted(forks)  # (t0, t1, w1, pid)
        self.starts = [f[0] for f in self.forks]
        self.max_len = max([f[2] - f[0] for f in self.forks] + [0])

    def child_exit_near(self, c0, c1, slack=5_000_000):
        """Whether a forked child may have exited (releasing its copies, so a
        FIN or RST reached this socket's peer end) while this close was being
        prepared: the state can then change between the host's probe and the
        shim's."""
        hi = bisect.bisect_left(self.starts, c1)
        i = hi - 1
        while i >= 0 and self.forks[i][0] >= c0 - slack - self.max_len:
            if self.forks[i][2] > c0 - slack:
                return True
            i -= 1
        return False

    def relation(self, sock_t0, sock_t1, c0, c1):
        """(marked, child_may_hold): marked is 'yes', 'no' or 'maybe'."""
        hi = bisect.bisect_left(self.starts, c1)
        marked_yes = marked_maybe = may_hold = False
        i = hi - 1
        while i >= 0 and self.forks[i][0] >= sock_t0 - self.max_len:
            f0, f1, w1, _ = self.forks[i]
            if f1 > sock_t0:  # the socket may have existed at this fork
                if sock_t1 < f0 and f1 < c0:
                    marked_yes = True
                else:
                    marked_maybe = True
                if w1 > c0:
                    may_hold = True
            i -= 1
        return ("yes" if marked_yes else "maybe" if marked_maybe else "no"), may_hold


def check_model(journal_prefix, log_glob, host_stdout, results, label, expect_forks=True):
    """Matches the shim's log of `host model` against the journals the
    threads wrote; records the checks in results."""
    words = host_stdout.decode(errors="replace").split()
    info = dict(w.split("=", 1) for w in words if "=" in w)
    main_pid = int(info.get("main_tid", "-1"))
    threads = int(info.get("threads", "0"))
    journals = {}
    fork_list = []
    for i in range(threads):
        with open(f"{journal_prefix}.{i}") as f:
            journals[i] = [json.loads(raw) for raw in f]
        fork_list += [(e["t0"], e["t1"], e["w1"], e["pid"])
                      for e in journals[i] if e["event"] == "fork"]
    forks = Forks(fork_list)

    logs = logs_by_pid(log_glob)
    parent_lines, problems = read_log(logs.get(main_pid, "/nonexistent"))
    results.check(f"{label}: parent log exists and every line is whole JSON",
                  main_pid in logs and parent_lines and not problems,
                  f"pid {main_pid} files {len(logs)} problems {problems[:3]}")
    by_tid = {}
    for l in parent_lines:
        by_tid.setdefault(l.get("tid"), []).append(l)

    mismatches = []
    counted = {"close": 0, "connect": 0, "accept": 0, "peer_reset": 0}
    stats = {"marked": 0, "held": 0, "dup_shared": 0, "own": 0}
    off_by_one = set()
    shared_after_release = []
    cookies = {}

    def bad(thread, k, want, got, why):
        mismatches.append(f"thread {thread} #{k} {why}: want {json.dumps(want)} got "
                          f"{json.dumps(got)}")

    for i, entries in journals.items():
        tid = entries[0]["tid"]
        expected = [e for e in entries
                    if e["event"] in ("connect", "accept", "close", "peer_reset")]
        got = by_tid.get(tid, [])
        if len(got) != len(expected):
            kinds_w, kinds_g = {}, {}
            for e in expected:
                kinds_w[e["event"]] = kinds_w.get(e["event"], 0) + 1
            for l in got:
                kinds_g[l.get("event")] = kinds_g.get(l.get("event"), 0) + 1
            bad(i, -1, kinds_w, kinds_g, "line count per event differs")
        for k, (e, l) in enumerate(zip(expected, got)):
            if l.get("pid") != main_pid:
                bad(i, k, e, l, "wrong pid")
                continue
            if l.get("event") != e["event"] or l.get("fd") != e["fd"]:
                bad(i, k, e, l, "event or fd differs (a line lost, extra or out of order)")
                break  # the rest of this thread would only cascade
            counted[e["event"]] += 1
            key = (i, e.get("sock"))
            if e["event"] in ("connect", "accept"):
                if l.get("local") != e["local"] or l.get("peer") != e["peer"]:
                    bad(i, k, e, l, "addresses differ")
                if e["event"] == "accept" and l.get("listen_fd") != e["listen_fd"]:
                    bad(i, k, e, l, "listen_fd differs")
                if e["event"] == "connect" and l.get("in_progress") is not False:
                    bad(i, k, e, l, "in_progress")
                if key in cookies:
                    bad(i, k, e, l, "socket announced twice")
                cookies[key] = l.get("cookie")
                continue
            if e["event"] == "peer_reset":
                if l.get("errno") != e["errno"] or l.get("call") != e["call"]:
                    bad(i, k, e, l, "peer_reset errno/call differ")
                if key in cookies and l.get("cookie") != cookies[key]:
                    bad(i, k, e, l, "cookie of another socket")
                continue
            why = close_mismatch(e, l, forks, stats, off_by_one, shared_after_release)
            if key in cookies and l.get("cookie") != cookies[key]:
                why = (why + "; " if why else "") + \
                    f"cookie {l.get('cookie')} is not this socket's {cookies[key]}"
            if why:
                bad(i, k, e, l, why)

    # the main thread made the listeners; thread 0's, left open, is released by the exit
    main_lines = by_tid.get(main_pid, [])
    listener0 = journals[0][0]["listener"] if threads else -1
    listens = [l for l in main_lines if l.get("event") == "listen"]
    exits = [l for l in main_lines if l.get("event") == "close"]
    exit_ok = (len(listens) == threads and len(main_lines) == threads + 1 and len(exits) == 1
               and exits[0]["via"] == "exit" and exits[0]["role"] == "listener"
               and exits[0]["fd"] == listener0)
    unknown_tids = set(by_tid) - {j[0]["tid"] for j in journals.values()} - {main_pid}
    all_cookies = list(cookies.values())
    results.check(f"{label}: every line matches what its thread did (fd, via, role, addresses, "
                  f"shared exactly when a dup was open or a child held it, unread_bytes, "
                  f"bytes, state, cookie)",
                  not mismatches and not unknown_tids,
                  f"{len(mismatches)} mismatches, first: {mismatches[:4]} "
                  f"unknown tids {unknown_tids}")
    results.check(f"{label}: no line lost, none extra ({sum(counted.values())} lines; closes: "
                  f"{stats['dup_shared']} dup-shared, {stats['marked']} after a fork "
                  f"({stats['held']} held by a child), {stats['own']} plain; "
                  f"{len(fork_list)} forks)",
                  not mismatches and counted["close"] > 1000 and exit_ok,
                  f"counted {counted}; main thread lines "
                  f"{[(l.get('event'), l.get('via'), l.get('fd')) for l in main_lines]} "
                  f"(listener0 {listener0})")
    results.check(f"{label}: cookies identify one socket each",
                  len(set(all_cookies)) == len(all_cookies) and 0 not in all_cookies
                  and None not in all_cookies,
                  f"{len(all_cookies)} sockets, {len(set(all_cookies))} distinct cookies")
    results.check(f"{label}: a close that released a socket (every fork child holding it "
                  f"gone) does not claim shared unqualified",
                  not shared_after_release,
                  f"{len(shared_after_release)} closes in state CLOSE say flags [shared] without "
                  f"'verified' although every child that held them had exited (README: shared = "
                  f"this close did not release the socket), e.g. (fd, sock, cookie) "
                  f"{shared_after_release[:2]}")
    if off_by_one:
        print(f"  note: {len(off_by_one)} close(s) in state CLOSE with bytes_read off by one "
              f"(a FIN before the reset is counted; TCP_INFO cannot tell), "
              f"e.g. (fd, bytes_read, app_read, eof seen, t0) {sorted(off_by_one)[0]}")

    # the forked children: each logs its inherited sockets to its own %p file
    child_problems, phantom, unverified_rst = [], [], []
    for f0, f1, w1, pid in forks.forks:
        if pid not in logs:
            child_problems.append(f"child {pid}: no log file")
            continue
        lines, probs = read_log(logs[pid])
        child_problems += probs
        fds = [l.get("fd") for l in lines]
        for l in lines:
            if l.get("pid") != pid or l.get("event") != "close" or l.get("via") != "exit":
                child_problems.append(f"child {pid}: {json.dumps(l)[:300]}")
                break
        if len(set(fds)) != len(fds) or listener0 not in fds:
            child_problems.append(f"child {pid}: fds {fds} (listener {listener0} expected once)")
        # an fd the child does not have (its fd table was copied before another
        # thread's accept/dup finished, its memory after): no socket, no line
        phantom += [(pid, l.get("fd"), l.get("role")) for l in lines
                    if l.get("cookie") in (0, None) and l.get("local") is None]
        unverified_rst += [(pid, l.get("fd")) for l in lines
                           if l.get("rst") is True and l.get("verified") is not True]
    if not expect_forks:
        results.check(f"{label}: no fork, no child log", not fork_list and len(logs) == 1,
                      f"{len(fork_list)} forks, files {sorted(logs)}")
        return
    results.check(f"{label}: {len(fork_list)} forked children each logged their inherited "
                  f"sockets to their own file, once each, via exit",
                  fork_list and not child_problems, child_problems[:4] or "no fork happened")
    results.check(f"{label}: forked children report only sockets they hold (no line for an fd "
                  f"the child does not have)",
                  not phantom,
                  f"{len(phantom)} close lines in children for fds not open there (local null, "
                  f"cookie 0, unread null, rst null), e.g. (child, fd, role) {phantom[:3]}")
    results.check(f"{label}: forked children claim an RST only after the kernel confirmed the "
                  f"release", not unverified_rst, str(unverified_rst[:3]))


def close_mismatch(e, l, forks, stats, off_by_one, shared_after_release):
    """Why close line l does not say what journal entry e did, or ''."""
    problems = []
    if l.get("via") != e["via"]:
        problems.append("via")
    if l.get("role") != e["role"]:
        problems.append("role")
    if l.get("local") != (e["local"] or None):
        problems.append("local")
    listener = e["role"] == "listener"
    if listener:
        if l.get("peer") is not None or l.get("unread_bytes") is not None:
            problems.append("listener peer/unread")
    else:
        if l.get("peer") != e["peer"]:
            problems.append("peer")
        ub, in_flight = l.get("unread_bytes"), e.get("in_flight", 0)
        # bytes the other end had sent may land between the host's own count
        # and the shim's probe (seen once in ~30,000 closes)
        if ub != e["unread"] and not (isinstance(ub, int) and in_flight > 0
                                      and e["unread"] < ub <= e["unread"] + in_flight):
            problems.append("unread_bytes")
        d = l.get("duration_ms")
        if not isinstance(d, (int, float)) or d < 0 or d > (e["t1"] - e["sock_t0"]) / 1e6 + 1:
            problems.append("duration_ms")
    flags = l.get("flags")
    rst = l.get("rst", "missing")
    verified = l.get("verified", "absent")
    if not isinstance(flags, list):
        return "flags missing"
    if e["dups_left"] > 0:
        stats["dup_shared"] += 1
        if flags != ["shared"] or rst is not False or verified != "absent":
            problems.append("a dup is still open: want flags [shared], rst false")
        return ", ".join(problems)

    marked, may_hold = forks.relation(e["sock_t0"], e["sock_t1"], e["t0"], e["t1"])
    racy = forks.child_exit_near(e["t0"], e["t1"])
    state_now = e["state"]
    if racy and l.get("state") in STATE_NAMES.values():
        state_now = next(k for k, v in STATE_NAMES.items() if v == l.get("state"))
    in_close = state_now == STATE_CLOSE

    def own():
        p = []
        if "shared" in flags:
            p.append("shared without a dup or a holder")
        extra = set(flags) - {"unread_data", "immediate_close"}
        if extra:
            p.append(f"unexpected flags {sorted(extra)}")
        want_unread = (not listener and e["unread"] > 0 and not in_close)
        in_flight = e.get("in_flight", 0)
        ub = l.get("unread_bytes")
        if (not want_unread and in_flight > 0 and not listener and not in_close
                and isinstance(ub, int) and 0 < ub <= e["unread"] + in_flight):
            want_unread = True  # bytes the other end sent landed after the host's probe
        if ("unread_data" in flags) != want_unread:
            p.append("unread_data flag")
        if rst is not want_unread:
            p.append("rst")
        if listener:
            if l.get("pending") != 0:
                p.append("pending")
        else:
            state = STATE_NAMES.get(state_now)
            if l.get("state") != state:
                p.append(f"state {l.get('state')} != {state}")
            if l.get("bytes_written") != e["app_written"]:
                p.append(f"bytes_written {l.get('bytes_written')} != {e['app_written']}")
            br = l.get("bytes_read")
            if br != e["app_read"]:
                if in_close and isinstance(br, int) and abs(br - e["app_read"]) == 1:
                    off_by_one.add((e["fd"], br, e["app_read"], e["eof"], e["t0"]))
                else:
                    p.append(f"bytes_read {br} != {e['app_read']}")
        return p

    shapes = []  # (name, problems) of every acceptable shape
    if marked in ("no", "maybe"):
        p = own()
        if verified != "absent":
            p.append("verified on a socket no fork shared")
        shapes.append(("own", p))
    if marked in ("yes", "maybe"):
        if in_close:
            # a reset socket is unhashed: sock_diag cannot find it, holder or not;
            # rst is false whoever releases it.  Either "shared" marked unverified,
            # or the verdict of a release.
            ok = flags == ["shared"] and rst is False and verified in ("absent", False)
            shapes.append(("shared-in-CLOSE", [] if ok else ["shared in CLOSE"]))
            p = own()
            if verified is True:
                p.append("verified in CLOSE")
            shapes.append(("released-in-CLOSE", p))
        else:
            p = own()
            if verified is not True:
                p.append("not verified")
            shapes.append(("released-verified", p))
            if may_hold:
                ok = flags == ["shared"] and rst is False and verified is True
                shapes.append(("held", [] if ok else ["held"]))
    fits = [name for name, p in shapes if not p]
    if not fits:
        problems.append(" | ".join(f"as {name}: {', '.join(p)}" for name, p in shapes))
    elif (fits == ["shared-in-CLOSE"] and marked == "yes" and not may_hold
          and verified == "absent"):
        shared_after_release.append((e["fd"], e["sock"], l.get("cookie")))
    if marked != "no":
        stats["marked"] += 1
        if "held" in fits:
            stats["held"] += 1
    else:
        stats["own"] += 1
    return ", ".join(problems)
