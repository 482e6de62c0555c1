#!/usr/bin/env python3
"""Hardening: the host never notices the shim, whatever it does (issue 5).

Runs build/hardening/host (tests/hardening/host.c) bare and under
LD_PRELOAD=build/librstshim.so and checks its output, what the peers saw on
the wire (ECONNRESET or not) and the shim's log.  Needs no root except where
it says SKIP.  Every process started is ended by its pid; every wait is
bounded.
"""
import errno
import glob
import json
import os
import random
import select
import shutil
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hardening_lib import (HOST, HOST_STATIC, ROOT, SHIM, TOOL, Results, check_model,  # noqa: E402
                           clean_env, kill_group, logs_by_pid, read_log, run, run_tests)

R = Results("hardening")
IS_ROOT = os.geteuid() == 0
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env"]


def closes(lines):
    return [l for l in lines if l.get("event") == "close"]


def escape(raw):
    """What the shim's format_printable makes of untrusted bytes."""
    return "".join(chr(b) if 0x20 <= b < 0x7f and b != 0x5c else f"\\x{b:02x}" for b in raw)


def stderr_messages(err):
    return [l for l in err.decode(errors="replace").splitlines() if l.startswith("rstshim:")]


# ------------------------------------------------------------------ threads

def test_threads_model(tmp):
    prefix = os.path.join(tmp, "journal")
    p = run([HOST, "model", prefix, "8", "3", "40000", "7"],
            env={"RSTSHIM_LOG": os.path.join(tmp, "model.%p.jsonl")}, timeout=120)
    if not R.check("threads: 8 threads x random socket/connect/accept/dup/dup2/close/fclose/"
                   "fork/recv/send ran to the end", p.returncode == 0 and not p.timed_out, p):
        return
    check_model(prefix, os.path.join(tmp, "model.*.jsonl"), p.stdout, R, "threads")


def test_exit_while_forking(tmp):
    """exit() while another thread forks, at several moments into the exit:
    the accepted socket's release resets its peer (100 bytes unread) whoever
    lets go last, and the exit line must say so; never "shared, rst false"
    from asking the kernel while this process still held the socket."""
    wrong, verified = [], 0
    for delay_us in (0, 2000, 5000, 10000, 20000):
        pattern = os.path.join(tmp, f"exitfork.{delay_us}.%p.jsonl")
        p = run([HOST, "exitfork", str(delay_us), "3000"], env={"RSTSHIM_LOG": pattern},
                timeout=60)
        out = p.stdout.decode(errors="replace").split()
        if p.returncode != 0 or p.timed_out or "accepted" not in out or "peer" not in out:
            wrong.append(f"delay {delay_us}: {p}")
            continue
        fd = int(out[out.index("accepted") + 1])
        wire = out[out.index("peer") + 1]
        lines, problems = read_log(logs_by_pid(pattern.replace("%p", "*")).get(p.pid, "/none"))
        mine = [l for l in closes(lines) if l.get("fd") == fd and l.get("via") == "exit"]
        verified += sum(1 for l in mine if l.get("verified"))
        if wire != "reset" or len(mine) != 1 or mine[0].get("rst") is not True or problems:
            wrong.append(f"delay {delay_us}: peer {wire}, lines {mine} {problems[:2]}")
    R.check(f"exit while another thread forks: each exit line of the unread socket says rst true, "
            f"as the peer saw ({verified} of 5 settled by asking the kernel)", not wrong, wrong)


# ------------------------------------------------------------------ signals

def sigstorm(tmp, with_malloc):
    name = "signals" + (" (main loop also allocates)" if with_malloc else "")
    journal = os.path.join(tmp, f"storm{with_malloc}.json")
    bare = run([HOST, "sigstorm", journal + ".bare", "2", str(with_malloc)], preload=False,
               timeout=30)
    pattern = os.path.join(tmp, f"storm{with_malloc}.%p.jsonl")
    p = run([HOST, "sigstorm", journal, "2", str(with_malloc)],
            env={"RSTSHIM_LOG": pattern}, timeout=30)
    ok = R.check(f"{name}: SIGALRM every 200 us closing and receiving from the handler: the "
                 f"host finishes (no deadlock, no crash) as it does bare",
                 bare.returncode == 0 and p.returncode == 0 and not p.timed_out,
                 f"bare: {bare}\nshimmed: {p}"
                 + ("\n(hung: the handler's close() ran shim code -- jansson/malloc -- while the "
                    "interrupted main thread held malloc's lock: close() is async-signal-safe "
                    "bare, not under the shim)" if p.timed_out else ""))
    if not ok:
        return
    with open(journal) as f:
        j = json.load(f)
    R.check(f"{name}: the handler's close() and recv() return what they do bare "
            f"({j['handler_close_ok']} closes, {j['handler_recv_eagain']} recv EAGAIN, "
            f"{j['signals']} signals)",
            j["handler_close_fail"] == 0 and j["handler_recv_other"] == 0
            and j["handler_close_ok"] > 10, j)
    logs = logs_by_pid(os.path.join(tmp, f"storm{with_malloc}.*.jsonl"))
    lines, problems = read_log(logs.get(p.pid, "/nonexistent"))
    by_cookie = {}
    for l in closes(lines):
        by_cookie.setdefault(l.get("cookie"), []).append(l)
    errs = []
    silent_handler = 0
    for s in j["sockets"]:
        got = by_cookie.get(s["cookie"], [])
        if s["kind"] == "victim_handler":
            silent_handler += not got
            want = (0, 1)
        else:
            want = (1,)
        if len(got) not in want:
            errs.append(f"{s['kind']} cookie {s['cookie']}: {len(got)} close lines")
        for l in got:
            if l.get("fd") != s["fd"] or l.get("via") != "close" or l.get("tid") != j["tid"]:
                hint = ""
                if s["kind"] == "victim_handler" and l.get("via") == "exit":
                    hint = (" (closed by the handler while the main thread was in shim code: the "
                            "close passed through, the record stayed; at exit the fd is EBADF and "
                            "the shim still writes a line -- release_begin() treats only ENOTSOCK "
                            "as stale)")
                errs.append(f"{s['kind']}: {l}{hint}")
    R.check(f"{name}: every close line whole and right; each socket reported at most once "
            f"({silent_handler} of {j['handler_close_ok']} handler closes interrupted shim code "
            f"and passed through unreported)",
            not problems and not errs and lines, (problems + errs)[:5])


def test_signals_storm(tmp):
    sigstorm(tmp, 0)


def test_signals_storm_with_malloc(tmp):
    sigstorm(tmp, 1)


def test_eintr(tmp):
    bare = run([HOST, "eintr"], preload=False, timeout=30)
    p = run([HOST, "eintr"], env={"RSTSHIM_LOG": os.path.join(tmp, "eintr.jsonl")}, timeout=30)
    out = bare.stdout.decode()
    expected_bare = ("recv, no SA_RESTART" in out and all(
        any(l.startswith(prefix) and want in l for l in out.splitlines())
        for prefix, want in [("recv, no SA_RESTART", "ret=-1 errno=EINTR handled=1"),
                             ("recv, SA_RESTART", "ret=positive errno=- handled=1"),
                             ("read, no SA_RESTART", "ret=-1 errno=EINTR handled=1"),
                             ("read, SA_RESTART", "ret=positive errno=- handled=1"),
                             ("accept, no SA_RESTART", "ret=-1 errno=EINTR handled=1"),
                             ("accept, SA_RESTART", "ret=positive errno=- handled=1"),
                             ("recv+SO_RCVTIMEO, SA_RESTART", "ret=-1 errno=EINTR handled=1")]))
    R.check("EINTR: bare, a handler without SA_RESTART interrupts recv/read/accept (EINTR); "
            "with SA_RESTART they restart (not with SO_RCVTIMEO)", expected_bare, out)
    R.check("EINTR: under the shim every case returns exactly what it returns bare",
            p.returncode == 0 and p.stdout == bare.stdout,
            f"bare:\n{out}\nshimmed:\n{p.stdout.decode()}{p.stderr.decode()}")


# ---------------------------------------------------------- errno and values

def test_errno_values(tmp):
    bare = run([HOST, "errno2"], preload=False, timeout=30)
    for events in ("all", "flagged"):
        log = os.path.join(tmp, f"errno-{events}.jsonl")
        p = run([HOST, "errno2"], env={"RSTSHIM_LOG": log, "RSTSHIM_EVENTS": events}, timeout=30)
        diff = [f"bare: {a!r}\nshim: {b!r}" for a, b in
                zip(bare.stdout.decode().splitlines(), p.stdout.decode().splitlines()) if a != b]
        R.check(f"errno ({events}): ENOTSOCK on files and pipes, EINVAL, EDOM, EAGAIN, EBADF, "
                f"EPIPE, ENOTCONN, EFAULT, EINPROGRESS: every return value and errno as bare, "
                f"and errno untouched by successful calls",
                bare.returncode == 0 and p.returncode == 0 and p.stdout == bare.stdout
                and len(bare.stdout.splitlines()) > 80, diff[:6] or f"{bare}\n{p}")
    lines, problems = read_log(os.path.join(tmp, "errno-all.jsonl"))
    R.check("errno: the log of all those failures is whole JSON and names only TCP sockets",
            lines and not problems and all(l.get("event") != "close" or l.get("local")
                                           for l in lines), problems[:3])


# ------------------------------------------------------------------- daemon

def test_daemon(tmp):
    status = os.path.join(tmp, "daemon.status")
    own = os.path.join(tmp, "daemon.own")
    pattern = os.path.join(tmp, "daemon.%p.jsonl")
    p = run([HOST, "daemon", status, own], env={"RSTSHIM_LOG": pattern}, timeout=20)
    deadline = time.monotonic() + 10
    while not os.path.exists(status) and time.monotonic() < deadline:
        time.sleep(0.02)
    if not R.check("daemon(): the parent returns at once and the daemon starts serving",
                   p.returncode == 0 and os.path.exists(status), p):
        return
    with open(status) as f:
        pid, port, own_fd, lfd = (int(x) for x in f.read().split())
    seen = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"hello world")
            try:
                seen.append(c.recv(10))
            except ConnectionResetError:
                seen.append("rst")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"quit")
            seen.append(c.recv(10))
    except OSError as e:
        seen.append(f"error {e}")
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    if os.path.exists(f"/proc/{pid}"):
        kill_group(pid)
        R.check("daemon(): the daemon finished", False, "still running after 10 s; killed")
        return
    files = logs_by_pid(os.path.join(tmp, "daemon.*.jsonl"))
    lines, problems = read_log(files.get(pid, "/nonexistent"))
    with open(own) as f:
        own_content = f.read()
    R.check("daemon(): closing every fd then opening its own file gives it fd 3, and no "
            "JSON ever lands in it", own_fd == 3 and own_content == "daemon own file\ndone\n",
            f"own fd {own_fd}, content {own_content!r}")
    events = [(l.get("event"), l.get("via"), l.get("role"), l.get("fd")) for l in lines]
    c = closes(lines)
    ok = (list(files) == [pid] and not problems and all(l.get("pid") == pid for l in lines)
          and events == [("listen", None, None, lfd), ("accept", None, None, lfd + 1),
                         ("close", "close", "accepted", lfd + 1), ("accept", None, None, lfd + 1),
                         ("close", "close", "accepted", lfd + 1),
                         ("close", "close", "listener", lfd)])
    R.check("daemon(): the daemon logs to its own %p file (and only it): listen, accept, "
            "close, accept, close, close", ok,
            f"files {sorted(files)} daemon {pid} events {events} problems {problems[:2]}")
    if ok:
        R.check("daemon(): its verdicts are right: unread request -> unread_data/rst true (the "
                "client saw an RST), clean exchange and listener -> no flags, rst false",
                seen[:1] == ["rst"] and c[0]["unread_bytes"] == 9
                and c[0]["flags"] == ["unread_data"] and c[0]["rst"] is True
                and c[1]["flags"] == [] and c[1]["rst"] is False
                and c[2]["flags"] == [] and c[2]["rst"] is False and c[2]["pending"] == 0
                and "verified" not in c[2], f"client saw {seen}; closes {c}")


# -------------------------------------------------------------------- spawn

def parse_kv(text):
    out = {}
    for word in text.replace(";", " ").replace(",", " ").split():
        if "=" in word:
            k, v = word.split("=", 1)
            out.setdefault(k, v)
    return out


def test_spawn_and_system(tmp):
    pattern = os.path.join(tmp, "spawn.%p.jsonl")
    p = run([HOST, "spawn"], env={"RSTSHIM_LOG": pattern}, timeout=30)
    out = p.stdout.decode().splitlines()
    if not R.check("posix_spawn/system: the host and its children ran",
                   p.returncode == 0 and len(out) == 7, p):
        return
    s1, saw1, s1exit, s2, s2closed, sy, syclosed = out
    k1, k2, ky = parse_kv(s1), parse_kv(s2), parse_kv(sy)
    inh, clo = int(k1["inheritable_fd"]), int(k1["cloexec_fd"])
    c2fd, sysfd = int(k2["fd"]), int(ky["fd"])
    truth = {
        "parent closes inheritable while the child holds it": saw1.split("saw ")[1].split(",")[0],
        "parent closes CLOEXEC": saw1.rsplit("saw ", 1)[1],
        "child 1 exits last": s1exit.rsplit("saw ", 1)[1],
        "child 2 exits while the parent holds": s2.split("saw ")[1].split(" ")[0],
        "parent closes after child 2 exited": s2closed.rsplit("saw ", 1)[1],
        "sh of system() exits while the parent holds": sy.split("saw ")[1].split(" ")[0],
        "parent closes after system()": syclosed.rsplit("saw ", 1)[1],
    }
    R.check("posix_spawn/system: on the wire, sockets without CLOEXEC are held by the child "
            "(no RST when the parent closes first), CLOEXEC ones are not",
            list(truth.values()) == ["nothing", "rst", "rst", "nothing", "rst", "nothing", "rst"],
            truth)
    files = logs_by_pid(os.path.join(tmp, "spawn.*.jsonl"))
    parent, _ = read_log(files.get(p.pid, "/nonexistent"))
    by_cookie = {}
    for l in closes(parent):
        by_cookie.setdefault(l.get("cookie"), []).append(l)

    def only(cookie):
        got = by_cookie.get(int(cookie), [])
        return got[0] if len(got) == 1 else {"lines": got}
    first_inh = only(k1["inheritable_cookie"])
    R.check("posix_spawn: the parent's close of an inheritable socket the child still holds: "
            "flags [shared], rst false (verified)",
            first_inh.get("flags") == ["shared"] and first_inh.get("rst") is False
            and first_inh.get("verified") is True, first_inh)
    lc = only(k1["cloexec_cookie"])
    R.check("posix_spawn: the parent's close of a CLOEXEC socket is its own: unread_data, rst "
            "true, not shared", "unread_data" in lc.get("flags", []) and lc.get("rst") is True
            and "shared" not in lc.get("flags", []) and "verified" not in lc, lc)
    l2, ls = only(k2["cookie"]), only(ky["cookie"])
    R.check("posix_spawn/system: the parent's close after the child exited is the release: "
            "unread_data, rst true (as the peer saw)",
            l2.get("flags") == ["unread_data"] and l2.get("rst") is True
            and ls.get("flags") == ["unread_data"] and ls.get("rst") is True, f"{l2}\n{ls}")
    children = {pid: read_log(f) for pid, f in files.items() if pid != p.pid}
    child_ok = (int(k1["child"]) in children and int(k2["child"]) in children
                and k1 and s1exit.split("exit=")[1].startswith("0") and k2["exit"] == "0"
                and ky["exit"] == "3"
                and all(not probs and all(l.get("pid") == pid for l in ls_)
                        for pid, (ls_, probs) in children.items()))
    R.check("posix_spawn/system: the spawned children run normally (exit status kept) and log "
            "to their own %p files", child_ok,
            f"{out} files {sorted(files)} problems "
            f"{[probs for _, probs in children.values() if probs][:2]}")
    # the children's own closes of what they inherited, against the wire
    wrong = []
    c1 = [l for l in closes(children.get(int(k1["child"]), ([], []))[0]) if l.get("fd") == inh]
    c2 = [l for l in closes(children.get(int(k2["child"]), ([], []))[0]) if l.get("fd") == c2fd]
    csh = [l for pid, (ls_, _) in children.items()
           if pid not in (int(k1["child"]), int(k2["child"]))
           for l in closes(ls_) if l.get("fd") == sysfd]
    for name, got, saw in [("child 1 (last holder)", c1, truth["child 1 exits last"]),
                           ("child 2 (parent still holds)", c2,
                            truth["child 2 exits while the parent holds"]),
                           ("sh of system() (parent still holds)", csh,
                            truth["sh of system() exits while the parent holds"])]:
        if len(got) != 1 or not got[0].get("adopted"):
            wrong.append(f"{name}: want one adopted close line, got {got}")
        elif (got[0].get("rst") is True) != (saw == "rst"):
            wrong.append(f"{name}: says rst {got[0].get('rst')} flags {got[0].get('flags')} "
                         f"but the peer saw {saw!r}")
    R.check("posix_spawn/system: a spawned child's close of an inherited socket claims an RST "
            "exactly when the peer got one (not while the parent still holds it)",
            not wrong, wrong)


# --------------------------------------------------------------- SCM_RIGHTS

def scm(tmp, how):
    pattern = os.path.join(tmp, f"scm-{how}.%p.jsonl")
    p = run([HOST, "scm", how], env={"RSTSHIM_LOG": pattern}, timeout=30)
    out = p.stdout.decode()
    if not R.check(f"SCM_RIGHTS ({how}): the host ran", p.returncode == 0 and
                   "after receiver close" in out, p):
        return
    kv = {}
    for line in out.splitlines():
        role = line.split()[0]
        kv[role] = parse_kv(line)
    sender_fd, receiver_fd = int(kv["sender"]["fd"]), int(kv["receiver"]["fd"])
    receiver_pid = int(kv["receiver"]["pid"])
    receiver_tid = int(kv["receiver"]["tid"])
    saw_sender = out.split("after sender close: peer saw ")[1].split()[0]
    saw_receiver = out.split("after receiver close: peer saw ")[1].split()[0]
    R.check(f"SCM_RIGHTS ({how}): on the wire, the sender's close sends nothing (the receiver "
            f"holds the socket); the receiver's close with unread bytes sends the RST",
            saw_sender == "nothing" and saw_receiver == "rst", out)
    files = logs_by_pid(os.path.join(tmp, f"scm-{how}.*.jsonl"))
    sender_lines, _ = read_log(files.get(p.pid, "/nonexistent"))
    recv_lines, probs = read_log(files.get(receiver_pid, "/nonexistent"))
    sl = [l for l in closes(sender_lines) if l.get("fd") == sender_fd and l.get("tid") == p.pid
          and l.get("role") == "accepted"]
    rl = [l for l in closes(recv_lines) if l.get("fd") == receiver_fd
          and l.get("tid") == receiver_tid]
    R.check(f"SCM_RIGHTS ({how}): the receiver adopts the socket: its close line has "
            f"adopted true, unread_bytes 6, unread_data, rst true",
            len(rl) == 1 and rl[0].get("adopted") is True and rl[0].get("unread_bytes") == 6
            and "unread_data" in rl[0].get("flags", []) and rl[0].get("rst") is True
            and rl[0].get("role") == "accepted" and not probs, rl or recv_lines[-3:])
    R.check(f"SCM_RIGHTS ({how}): the sender's close while the receiver holds the socket does "
            f"not claim an RST (the peer saw none)",
            len(sl) == 1 and sl[0].get("rst") is not True and "unread_data" not in sl[0]["flags"],
            sl)


def test_scm_rights_fork(tmp):
    scm(tmp, "fork")


def test_scm_rights_thread(tmp):
    scm(tmp, "thread")


# ------------------------------------------------------- the log in trouble

def bare_work_status():
    return run([HOST, "work", "3", "7"], preload=False, timeout=20).returncode


def test_log_stdout_pipe_reader_gone(tmp):
    """RSTSHIM_LOG=stdout on a pipe whose reader leaves after the first line."""
    err_path = os.path.join(tmp, "pipe.err")
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([HOST, "work", "80", "7", "4"], stdout=subprocess.PIPE,
                                stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
                                env=clean_env({"RSTSHIM_LOG": "stdout"}))
        first = b""
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        if ready:
            first = proc.stdout.readline()
        proc.stdout.close()  # the reader goes away
        try:
            status = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            status = "hung"
    with open(err_path, "rb") as f:
        msgs = stderr_messages(f.read())
    R.check("log on a pipe whose reader left: the host is not killed by SIGPIPE, its exit "
            "status is unchanged, one stderr message says why the shim went quiet",
            first.startswith(b"{") and status == bare_work_status() == 7 and len(msgs) == 1
            and "cannot write log" in msgs[0] and "Broken pipe" in msgs[0],
            f"first {first[:80]!r} status {status} messages {msgs}")


def test_log_stderr_pipe_no_reader(tmp):
    r, w = os.pipe()
    os.close(r)
    proc = subprocess.Popen([HOST, "work", "10", "7"], stdout=subprocess.DEVNULL, stderr=w,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env=clean_env({"RSTSHIM_LOG": "stderr"}))
    os.close(w)
    try:
        status = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        status = "hung"
    R.check("log to stderr, a pipe with no reader: the host is not killed by SIGPIPE, exit "
            "status unchanged", status == 7, f"status {status}")


def test_log_fifo_reader_gone(tmp):
    fifo = os.path.join(tmp, "log.fifo")
    os.mkfifo(fifo, 0o600)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    p = subprocess.Popen([HOST, "work", "80", "7", "4"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         start_new_session=True, env=clean_env({"RSTSHIM_LOG": fifo}))
    got = b""
    deadline = time.monotonic() + 10
    while b"\n" not in got and time.monotonic() < deadline:
        ready, _, _ = select.select([rfd], [], [], 0.2)
        if ready:
            got += os.read(rfd, 4096)
    os.close(rfd)  # the reader goes away
    try:
        _, err = p.communicate(timeout=30)
        status = p.returncode
    except subprocess.TimeoutExpired:
        kill_group(p.pid)
        err, status = p.communicate()[1], "hung"
    msgs = stderr_messages(err)
    R.check("log on a FIFO whose reader left: host not killed, exit status unchanged, one "
            "stderr message", got.startswith(b"{") and status == 7 and len(msgs) == 1
            and "cannot write log" in msgs[0], f"got {got[:60]!r} status {status} {msgs}")


def test_log_fifo_without_reader(tmp):
    fifo = os.path.join(tmp, "noreader.fifo")
    os.mkfifo(fifo, 0o600)
    p = run([HOST, "work", "5", "7"], env={"RSTSHIM_LOG": fifo}, timeout=8)
    msgs = stderr_messages(p.stderr)
    R.check("log on a FIFO nobody reads: the host is not blocked in the shim's open(); it "
            "runs to its end and the shim says once why it is quiet",
            not p.timed_out and p.returncode == 7 and len(msgs) == 1,
            f"{p}" + ("\n(the shim's open(path, O_WRONLY) of the FIFO blocks until a reader "
                      "appears: shim/log.c open_file() should open with O_NONBLOCK -- ENXIO "
                      "without a reader -- then clear O_NONBLOCK)" if p.timed_out else ""))


def unshare_tmpfs(tmp, fill_pages, name):
    """Runs `host work` with its log on a 16 KiB tmpfs with fill_pages of 4
    pages already used, in a private mount namespace.  Returns (Ran, log copy)."""
    mnt = os.path.join(tmp, f"{name}.mnt")
    os.mkdir(mnt)
    copy = os.path.join(tmp, f"{name}.copy")
    script = (
        'set -e; mount -t tmpfs -o size=16k,mode=0755 rstshim-test "$MNT"; '
        'dd if=/dev/zero of="$MNT/fill" bs=4096 count="$FILL" 2>/dev/null || true; set +e; '
        'env LD_PRELOAD="$SHIM" RSTSHIM_LOG="$MNT/log.jsonl" "$HOST" work 20 7; st=$?; '
        'cp "$MNT/log.jsonl" "$COPY" 2>/dev/null; exit $st')
    env = clean_env({"MNT": mnt, "FILL": str(fill_pages), "SHIM": SHIM, "HOST": HOST,
                     "COPY": copy}, preload=False)
    p = run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], raw_env=env,
            timeout=30)
    return p, copy


def test_log_full_disk(tmp):
    if not IS_ROOT:
        R.skip("log on a full disk", "needs root (mount a 16 KiB tmpfs with unshare -m)")
        return
    probe = run(["unshare", "-m", "--propagation", "private", "true"], preload=False, timeout=10)
    if probe.returncode != 0:
        R.skip("log on a full disk", f"unshare -m failed: {probe.stderr.decode().strip()}")
        return
    p, copy = unshare_tmpfs(tmp, 16, "full")
    msgs = stderr_messages(p.stderr)
    R.check("log on a full tmpfs: the host keeps running, exit status unchanged, one stderr "
            "message (No space left on device)",
            p.returncode == 7 and len(msgs) == 1 and "No space left" in msgs[0], p)
    p, copy = unshare_tmpfs(tmp, 3, "nearly")
    msgs = stderr_messages(p.stderr)
    data = open(copy, "rb").read() if os.path.exists(copy) else b""
    whole = data.split(b"\n")[:-1] if data else []
    bad = []
    for raw in whole:
        try:
            json.loads(raw)
        except ValueError:
            bad.append(raw[:80])
    R.check(f"log filling a tmpfs mid-run: host unchanged, one stderr message, every whole "
            f"line before it valid ({len(whole)} lines, {len(data)} bytes)",
            p.returncode == 7 and len(msgs) == 1 and "No space left" in msgs[0] and whole
            and not bad, f"{p} bad {bad[:2]}")
    if data and not data.endswith(b"\n"):
        cut = len(data.rsplit(b"\n", 1)[-1])
        print(f"  note: the last line was cut by the full disk ({cut} bytes of a line left in "
              f"the file); a reader must skip it")


def test_log_eacces(tmp):
    if not IS_ROOT:
        R.skip("log path not writable (EACCES)", "needs root (run the host as nobody)")
        return
    base = os.path.join(tmp, "eacces")
    os.mkdir(base)
    os.chmod(tmp, 0o755)
    os.chmod(base, 0o755)
    private = os.path.join(base, "private")
    os.mkdir(private, 0o700)
    host, shim = os.path.join(base, "host"), os.path.join(base, "librstshim.so")
    shutil.copy(HOST, host)
    shutil.copy(SHIM, shim)
    os.chmod(host, 0o755)
    os.chmod(shim, 0o755)
    log = os.path.join(private, "log.jsonl")
    bare = run(AS_NOBODY + [host, "work", "5", "7"], preload=False, timeout=20, cwd=base)
    p = run(AS_NOBODY + [f"LD_PRELOAD={shim}", f"RSTSHIM_LOG={log}", host, "work", "5", "7"],
            preload=False, timeout=20, cwd=base)
    msgs = stderr_messages(p.stderr)
    R.check("log in a root-only 0700 directory, host run as nobody: it runs as it does bare, "
            "one stderr message (Permission denied), no file",
            bare.returncode == 7 and p.returncode == 7 and len(msgs) == 1
            and "cannot open log" in msgs[0] and "Permission denied" in msgs[0]
            and not os.path.exists(log), f"bare {bare}\nshimmed {p}")


def test_long_lines(tmp):
    rng = random.Random(5)
    # mostly bytes that escape to \xNN (five characters once JSON escapes the backslash):
    # the config_error line outgrows the shim's 2048-byte line buffer
    tag = (bytes([0x01, 0x22, 0x5c, 0x7f, 0xff, 0xc3, 0xa9]) + b"\x1b[31m"
           + bytes(rng.choice([rng.randrange(0x80, 0x100), rng.randrange(1, 0x20), 0x5c])
                   for _ in range(120)))[:127]
    junk = bytes(0x80 + (i % 0x80) for i in range(300))
    log = os.path.join(tmp, "long.jsonl")
    env = {k.encode(): v.encode() for k, v in clean_env().items()}
    env.update({b"RSTSHIM_LOG": log.encode(), b"RSTSHIM_TAG": tag,
                b"RSTSHIM_IMMEDIATE_MS": junk})
    p = run([HOST, "longline"], raw_env=env, timeout=20)
    with open(log, "rb") as f:
        data = f.read()
    lines, problems = read_log(log)
    main_comm = escape(b"\xff\"quote\\\x7f\x1b[1mAB")
    thread_comm = escape(b"\x01\"\\th\xc3\xa9\xffread-two"[:15])
    comms = {l.get("comm") for l in lines}
    cfg = [l for l in lines if l.get("event") == "config_error"]
    longest = max((len(raw) for raw in data.split(b"\n")), default=0)
    R.check(f"very long lines (127-byte hostile tag, 15-byte hostile comm, 300-byte bad value; "
            f"longest line {longest} bytes): every line whole, valid JSON, valid UTF-8",
            p.returncode == 0 and not problems and lines and longest > 2048
            and data.decode("utf-8", errors="strict") is not None, f"{p} {problems[:2]}")
    R.check("very long lines: the tag, a 15-byte comm and a bad value escaped in full, exactly",
            lines and all(l.get("tag") == escape(tag) for l in lines)
            and thread_comm in comms
            and len(cfg) == 1 and cfg[0].get("value") == escape(junk[:256]),
            f"tags {[l.get('tag') for l in lines[:1]]} want {escape(tag)!r}; comms {comms} "
            f"want {thread_comm!r}; config_error {cfg[:1]}")
    # the main thread's first line (the config_error, in the constructor) came before its
    # prctl(PR_SET_NAME): later lines must carry the name ps and bpftrace show then
    after = [l.get("comm") for l in lines if l.get("event") != "config_error"
             and l.get("tid") == p.pid]
    R.check("comm follows a thread renamed (prctl PR_SET_NAME) after its first line",
            after and set(after) == {main_comm},
            f"main-thread lines after the rename say comm {sorted(set(after))}, the thread is "
            f"named {main_comm!r} (shim/process.c process_comm() caches the name at the "
            f"thread's first line)")


def test_thread_names(tmp):
    """comm is cached per thread; every rename must still show on the next line."""
    log = os.path.join(tmp, "rename.jsonl")
    bare = run([HOST, "rename"], preload=False, timeout=30)
    p = run([HOST, "rename"], env={"RSTSHIM_LOG": log}, timeout=30)
    lines, problems = read_log(log)
    accepts = [l for l in lines if l.get("event") == "accept"]
    main = [l.get("comm") for l in accepts if l.get("tid") == p.pid]
    other = [l.get("comm") for l in accepts if l.get("tid") != p.pid]
    R.check("thread names: prctl answers as it does bare (a bad option: -1 EINVAL; "
            "PR_GET_NAME: the name)",
            p.returncode == 0 and bare.returncode == 0 and p.stdout == bare.stdout
            and b"prctl bad option: -1 Invalid argument" in p.stdout
            and b"prctl get name: 0 by-proc" in p.stdout, f"bare {bare}\nshimmed {p}")
    R.check("thread names: comm follows prctl(PR_SET_NAME) after a line, pthread_setname_np "
            "on the thread itself and on another thread, and a name written to "
            "/proc/self/task/TID/comm (within 1 s)",
            not problems and main == ["host", "main-np", "by-proc"]
            and other == ["second", "third", "second-np"],
            f"main thread's accept lines say {main}, want ['host', 'main-np', 'by-proc']; "
            f"the second thread's {other}, want ['second', 'third', 'second-np']")


# ------------------------------------------------ where LD_PRELOAD cannot help

def test_static_binary(tmp):
    pattern = os.path.join(tmp, "static.%p.jsonl")
    p = run([HOST_STATIC, "work", "3", "0"], env={"RSTSHIM_LOG": pattern}, timeout=20)
    control = run([HOST, "work", "3", "0"], env={"RSTSHIM_LOG": os.path.join(tmp, "dyn.%p.jsonl")},
                  timeout=20)
    R.check("static binary under LD_PRELOAD: it runs normally and no log appears (the shim "
            "cannot load), while the same program linked dynamically is logged",
            p.returncode == 0 and not glob.glob(os.path.join(tmp, "static.*"))
            and control.returncode == 0 and glob.glob(os.path.join(tmp, "dyn.*")),
            f"{p} files {os.listdir(tmp)}")
    t = run([TOOL, "-o", os.path.join(tmp, "tool.%p.jsonl"), "--", HOST_STATIC, "work", "3", "0"],
            preload=False, timeout=20)
    R.check("static binary: `rstshim -- STATIC` warns that LD_PRELOAD cannot work and runs it",
            t.returncode == 0 and b"statically linked" in t.stderr, t)


def test_setuid_binary(tmp):
    if not IS_ROOT:
        R.skip("setuid binary", "needs root (a setuid-root copy run as nobody)")
        return
    base = os.path.join(tmp, "suid")
    os.mkdir(base)
    os.chmod(tmp, 0o755)
    os.chmod(base, 0o777)
    host = os.path.join(base, "host")
    shutil.copy(HOST, host)
    os.chown(host, 0, 0)
    os.chmod(host, 0o4755)
    pattern = os.path.join(base, "suid.%p.jsonl")
    p = run(AS_NOBODY + [f"LD_PRELOAD={SHIM}", f"RSTSHIM_LOG={pattern}", host, "work", "2", "0"],
            preload=False, timeout=20, cwd=base)
    check_euid = run(AS_NOBODY + ["stat", "-c", "%a", host], preload=False, timeout=10)
    nosuid = b"nosuid" in run(["findmnt", "-no", "OPTIONS", "-T", base], preload=False,
                              timeout=10).stdout
    if nosuid:
        R.skip("setuid binary", f"{base} is on a nosuid mount")
        return
    R.check("setuid binary run by nobody with LD_PRELOAD: the loader ignores the shim; the "
            "program runs and no log appears",
            p.returncode == 0 and not glob.glob(os.path.join(base, "suid.*")),
            f"{p} {check_euid.stdout}")
    t = run([TOOL, "--", host, "work", "2", "0"], preload=False, timeout=20)
    R.check("setuid binary: `rstshim -- SETUID` warns", b"setuid" in t.stderr and
            t.returncode == 0, t)


def test_limits_documented(tmp):
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    limits = readme.split("## Limits", 1)[-1]
    R.check("README's Limits name static binaries, setuid programs and raw syscall() users",
            "static" in limits and "setuid" in limits and "syscall()" in limits, limits[:300])


# ----------------------------------------------------------------- security

def test_log_mode_0600(tmp):
    modes = {}
    for um in (0o000, 0o022, 0o077):
        pattern = os.path.join(tmp, f"umask{um:03o}.%p.jsonl")
        env = clean_env({"RSTSHIM_LOG": pattern})
        p = subprocess.Popen([HOST, "work", "1", "0"], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=lambda um=um: os.umask(um), start_new_session=True)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_group(p.pid)
        files = glob.glob(os.path.join(tmp, f"umask{um:03o}.*.jsonl"))
        modes[f"{um:03o}"] = [oct(stat.S_IMODE(os.stat(f).st_mode)) for f in files]
    R.check("log files are created 0600 whatever the umask (000, 022, 077)",
            all(m == ["0o600"] for m in modes.values()), modes)


def test_no_payload_in_log(tmp):
    payload = "RSTSHIM-PAYLOAD-" + "".join(random.Random().choice("0123456789abcdef")
                                           for _ in range(32))
    log = os.path.join(tmp, "payload.jsonl")
    p = run([HOST, "payload", payload], env={"RSTSHIM_LOG": log}, timeout=20)
    data = open(log, "rb").read() if os.path.exists(log) else b""
    pieces = [payload[i:i + 10].encode() for i in range(0, len(payload) - 10)]
    leaked = [x for x in pieces if x in data]
    lines, _ = read_log(log)
    R.check("the log holds no payload bytes (sent with send/write/writev/sendmsg/sendto, left "
            "unread at an RST close), only sizes",
            p.returncode == 0 and lines and any(l.get("unread_bytes") for l in closes(lines))
            and not leaked, f"{p} leaked {leaked[:2]}")


def test_environment_read_once(tmp):
    pattern = os.path.join(tmp, "env.%p.jsonl")
    other = os.path.join(tmp, "other.%p.jsonl")
    p = run([HOST, "setenv", other], env={"RSTSHIM_LOG": pattern}, timeout=20)
    files = logs_by_pid(os.path.join(tmp, "env.*.jsonl"))
    child = int(p.stdout.split()[-1]) if p.returncode == 0 else -1
    parent_lines, _ = read_log(files.get(p.pid, "/nonexistent"))
    child_lines, _ = read_log(files.get(child, "/nonexistent"))
    events = {l.get("event") for l in parent_lines + child_lines}
    R.check("the environment changed after start (setenv in the host, clearenv in a forked "
            "child) changes nothing: same file, all events, no tag, no config_error",
            not glob.glob(os.path.join(tmp, "other.*")) and parent_lines and child_lines
            and {"listen", "accept", "connect", "close"} <= events
            and "config_error" not in events
            and not any("tag" in l for l in parent_lines + child_lines),
            f"{p} files {os.listdir(tmp)} events {events}")


def main():
    return run_tests(globals(), R, (SHIM, HOST, HOST_STATIC, TOOL), "test-hardening",
                     "rstshim-hardening-", tmp_mode=0o755)


if __name__ == "__main__":
    sys.exit(main())
