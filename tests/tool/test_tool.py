#!/usr/bin/env python3
"""Tests of the `rstshim` command (build/rstshim) and of `make demo`.

Run from anywhere: python3 tests/tool/test_tool.py (tests/tool/run.sh does).
Prints one line per check, `PASS name` / `FAIL name: why` / `SKIP name: why`,
then `N passed, N failed, N skipped`; exits 1 if anything failed.

Checks that need the preload library (build/librstshim.so) are skipped when
it is missing; everything else runs without it (a stand-in library is built
for the `run` checks).  Standard library only.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(ROOT, "build", "rstshim")
LIB = os.path.join(ROOT, "build", "librstshim.so")
SERVERS = os.path.join(ROOT, "build", "demo", "servers")
CLIENTS = os.path.join(ROOT, "build", "demo", "clients")
SAMPLES = os.path.join(ROOT, "tests", "tool", "samples")
GENLOG = os.path.join(ROOT, "tests", "tool", "genlog.py")

results = {"passed": 0, "failed": 0, "skipped": 0}


def report(status, name, why=""):
    key = {"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}[status]
    results[key] += 1
    print("%s %s%s" % (status, name, (": " + why) if why else ""), flush=True)


def check(name, fn):
    """Run one check: fn returns None (pass), a string (fail reason), or
    raises Skip."""
    try:
        why = fn()
    except Skip as s:
        report("SKIP", name, str(s))
        return
    except Exception as e:  # a crash in a check is a failure of that check
        report("FAIL", name, "%s: %s" % (type(e).__name__, e))
        return
    report("FAIL" if why else "PASS", name, why or "")


class Skip(Exception):
    pass


def need_lib():
    if not os.path.exists(LIB):
        raise Skip("build/librstshim.so not built")


def run(args, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    return subprocess.run(args, **kw)


def report_json(*files, stdin=None, extra=()):
    p = run([TOOL, "report", "--json", "--no-progress", *extra, *files], input=stdin)
    return p, json.loads(p.stdout)


def expect(got, want, what):
    if got != want:
        return "%s: got %r, want %r" % (what, got, want)
    return None


def first_error(*errs):
    for e in errs:
        if e:
            return e
    return None


TMP = tempfile.mkdtemp(prefix="rstshim-tooltest.")


def tmp(name):
    return os.path.join(TMP, name)


# ----------------------------------------------------------------- basics

def t_version():
    p = run([TOOL, "--version"])
    if p.returncode != 0 or not re.match(r"^rstshim \d+\.\d+", p.stdout):
        return "rc %d, %r" % (p.returncode, p.stdout)


def t_help():
    p = run([TOOL, "--help"])
    for word in ("report", "doctor", "--flagged", "--immediate-ms", "-o"):
        if word not in p.stdout:
            return "--help does not mention %s" % word
    return expect(p.returncode, 0, "exit status")


# ----------------------------------------------------------------- report

def t_report_sample_counts():
    p, d = report_json(os.path.join(SAMPLES, "sample.jsonl"))
    c, causes, ev = d["closes"], d["causes"], d["input"]["events"]
    return first_error(
        expect(p.returncode, 0, "exit status"),
        expect(d["input"]["lines"], 23, "lines"),
        expect(d["input"]["skipped"]["total"], 0, "skipped"),
        expect((ev["listen"], ev["accept"], ev["connect"], ev["setsockopt"], ev["close"]),
               (1, 5, 1, 1, 9), "listen/accept/connect/setsockopt/close"),
        expect((c["flagged"], c["rst_true"], c["rst_false"], c["rst_unknown"]),
               (8, 5, 3, 1), "flagged/rst true/false/unknown"),
        expect(c["connections_reset"], 8, "connections reset (4 pending + 4)"),
        expect(c["rst_outgoing"], 1, "rst of outgoing connections"),
        expect({k: (v["closes"], v["rst"]) for k, v in causes.items()},
               {"unread_data": (3, 3), "linger_zero": (1, 1), "immediate_close": (1, 0),
                "recv_timeout": (1, 0), "pending_connections": (1, 1), "shared": (1, 0),
                "tcp_linger2": (0, 0)},
               "causes"),
        expect(d["setsockopt_linger_zero"], 1, "setsockopt linger_zero"),
        expect(all(v["hint"] for v in causes.values()), True, "a hint per cause"))


def t_report_listener_shutdown():
    """A listener's shutdown(SHUT_RD) with 3 connections queued resets them:
    counted as a release with pending_connections, not as a close."""
    path = tmp("shutdown.jsonl")
    common = {"pid": 7, "tid": 7, "comm": "srv", "fd": 3, "local": "127.0.0.1:9000"}
    lines = [dict(common, ts="2026-11-21T10:00:00.000000Z", event="listen", backlog=16),
             dict(common, ts="2026-11-21T10:00:00.500000Z", event="shutdown", how="SHUT_RD",
                  role="listener", pending=0, flags=[], rst=False),  # nothing queued: no RST
             dict(common, ts="2026-11-21T10:00:01.000000Z", event="shutdown", how="SHUT_RD",
                  role="listener", pending=3, flags=["pending_connections"], rst=True),
             dict(common, ts="2026-11-21T10:00:01.000100Z", event="close", via="close",
                  role="listener", peer=None, unread_bytes=None, pending=0, flags=[],
                  rst=False)]
    with open(path, "w") as f:
        f.writelines(json.dumps(l) + "\n" for l in lines)
    p, d = report_json(path)
    c, causes, ev = d["closes"], d["causes"], d["input"]["events"]
    return first_error(
        expect(p.returncode, 0, "exit status"),
        expect((ev.get("shutdown"), ev.get("close")), (2, 1), "shutdown/close events"),
        expect((c["rst_true"], c["rst_false"], c["connections_reset"]), (1, 1, 3),
               "rst true/false, connections reset"),
        expect(c["total"], c["rst_true"] + c["rst_false"] + c["rst_unknown"],
               "closes add up (a resetting shutdown counts as a listener's release)"),
        expect(causes.get("pending_connections", {}).get("rst"), 1, "pending_connections rst"),
        expect([(x["local"], x["connections_reset"]) for x in d["rst_per_listener"]],
               [("127.0.0.1:9000", 3)], "per listener"))


def t_report_sample_tables():
    _, d = report_json(os.path.join(SAMPLES, "sample.jsonl"))
    listeners = [(x["local"], x["connections_reset"]) for x in d["rst_per_listener"]]
    peers = [(x["host"], x["rst_closes"]) for x in d["rst_per_peer_host"]]
    worst = d["worst_offenders"][0]
    return first_error(
        expect(listeners, [("127.0.0.1:8080", 7)], "per listener"),
        expect(peers, [("10.0.0.1", 2), ("10.0.0.2", 1), ("127.0.0.1", 1)], "per peer host"),
        expect((worst["pid"], worst["fd"], worst["peer_host"], worst["closes"], worst["rst"]),
               (100, 5, "10.0.0.1", 3, 2), "worst offender"),
        expect(worst["flags"], ["unread_data", "immediate_close"], "worst offender flags"),
        expect((worst["first"], worst["last"]),
               ("2026-11-21T10:00:01.100000Z", "2026-11-21T10:00:11.000000Z"),
               "worst offender first/last"),
        expect(len(d["worst_offenders"]), 5, "offender rows (shared-only close not counted)"),
        expect(d["approximate"], False, "approximate"))


def t_report_sample_lifetime():
    _, d = report_json(os.path.join(SAMPLES, "sample.jsonl"))
    lt = d["lifetime_ms"]
    # values 0.05 3 5 12.5 20 100.2 1000: p50 is 12.5, p90/p99 the largest;
    # the histogram is exact to ~7%, min and max exactly
    if not (11.6 <= lt["p50"] <= 13.4):
        return "p50 %r not ~12.5" % lt["p50"]
    return first_error(expect(lt["count"], 7, "count (null and listener left out)"),
                       expect((lt["min"], lt["max"], lt["p99"]), (0.05, 1000, 1000),
                              "min/max/p99"))


def t_report_sample_errors():
    _, d = report_json(os.path.join(SAMPLES, "sample.jsonl"))
    ae = d["accept_error"]
    return first_error(
        expect(d["peer_reset"]["by_errno"], {"ECONNRESET": 1, "EPIPE": 1}, "peer_reset"),
        expect((ae["lines"], ae["suppressed"], ae["rlimit_nofile"]), (2, 41, 64),
               "accept_error lines/suppressed/rlimit"),
        expect(ae["by_errno"], {"EMFILE": {"lines": 2, "suppressed": 41}}, "accept_error"),
        expect(d["config_error"]["total"], 1, "config_error"),
        expect(d["config_error"]["messages"],
               ["RSTSHIM_IMMEDIATE_MS=abc: not a number, using 100"], "config message"),
        expect(d["exec_failed"], 1, "exec_failed"),
        expect((d["input"]["time"]["first"], d["input"]["time"]["last"]),
               ("2026-11-21T10:00:00.000000Z", "2026-11-21T10:00:13.005000Z"), "time span"))


def t_report_text():
    p = run([TOOL, "report", os.path.join(SAMPLES, "sample.jsonl")])
    out = p.stdout
    for want in ("unread_data", "fix: ", "RSTs per listener", "127.0.0.1:8080",
                 "RSTs per peer host", "Worst offenders", "p50", "p90", "p99", "max",
                 "peer_reset: 2", "accept_error: 2 lines, 43 failed accepts",
                 "config_error: 1"):
        if want not in out:
            return "text report lacks %r" % want
    return expect(p.returncode, 0, "exit status")


MALFORMED = (
    '{"ts":"2026-11-21T10:00:00.000001Z","event":"listen","pid":1,"tid":1,"fd":3,'
    '"local":"127.0.0.1:1","backlog":5}\n'
    "this is not json\n"
    '{"ts":"2026-11-21T10:00:00.000002Z","event":"close","pid":1,"fd":4,"fl\n'
    '{"msg":"an application log line"}\n'
    '{"ts":"2026-11-21T10:00:00.000003Z","event":"close","pid":"one"}\n'
    "\n"
    "[1,2,3]\n"
    '{"ts":"2026-11-21T10:00:00.000004Z","event":"close","pid":1,"tid":1,"fd":4,"via":"close",'
    '"role":"accepted","local":"127.0.0.1:1","peer":"127.0.0.1:2","unread_bytes":3,'
    '"flags":["unread_data"],"rst":true,"duration_ms":1.5}\n'
    '{"ts":"2026-11-21T10:00:00.000005Z","event":"close","pid":1,"tid":1,"fd":5,"via'
)


def t_report_malformed():
    with open(tmp("malformed.log"), "w") as f:
        f.write(MALFORMED)
    p, d = report_json(tmp("malformed.log"))
    s = d["input"]["skipped"]
    return first_error(
        expect(p.returncode, 0, "exit status"),
        expect(d["input"]["lines"], 8, "lines"),
        expect(d["input"]["blank"], 1, "blank"),
        expect(d["input"]["events_total"], 2, "events"),
        expect((s["truncated"], s["not_json"], s["foreign"], s["total"]), (2, 1, 3, 6),
               "truncated/not_json/foreign/total"),
        expect(d["causes"]["unread_data"]["closes"], 1, "the good close still counted"))


def t_report_empty():
    open(tmp("empty.log"), "w").close()
    p, d = report_json(tmp("empty.log"))
    pt = run([TOOL, "report", tmp("empty.log")])
    return first_error(
        expect(p.returncode, 0, "exit status"),
        expect((d["input"]["lines"], d["input"]["events_total"], d["closes"]["total"]),
               (0, 0, 0), "lines/events/closes"),
        expect(d["lifetime_ms"]["p50"], None, "p50 of nothing"),
        expect(pt.returncode, 0, "text exit status"),
        None if "no close was flagged" in pt.stdout else "text lacks 'no close was flagged'")


def t_report_stdin():
    with open(os.path.join(SAMPLES, "sample.jsonl")) as f:
        data = f.read()
    p, d = report_json(stdin=data)
    return first_error(expect(p.returncode, 0, "exit status"),
                       expect(d["closes"]["rst_true"], 5, "rst closes from stdin"))


def t_report_split_files():
    # the %p case: one process's lines per file; totals add up
    with open(os.path.join(SAMPLES, "sample.jsonl")) as f:
        lines = f.readlines()
    paths = []
    for i in range(3):
        paths.append(tmp("split.%d" % (100 + i)))
        with open(paths[-1], "w") as f:
            f.writelines(lines[i::3])
    p, d = report_json(*paths)
    return first_error(expect(d["input"]["files"], 3, "files"),
                       expect(d["input"]["lines"], 23, "lines"),
                       expect(d["closes"]["connections_reset"], 8, "connections reset"),
                       expect(d["rst_per_listener"][0]["connections_reset"], 7, "listener"))


def t_report_missing_file():
    p, d = report_json(os.path.join(SAMPLES, "sample.jsonl"), tmp("does-not-exist"))
    return first_error(expect(p.returncode, 1, "exit status"),
                       expect(d["input"]["files_failed"], 1, "files_failed"),
                       expect(d["closes"]["total"], 9, "the readable file still counted"),
                       None if "does-not-exist" in p.stderr else "no message on stderr")


def t_report_oversized_line():
    with open(tmp("long.log"), "w") as f:
        f.write('{"ts":"2026-11-21T10:00:00.000001Z","event":"listen","pid":1,"fd":3}\n')
        f.write('{"x":"' + "a" * (5 << 20) + '"}\n')
        f.write('{"ts":"2026-11-21T10:00:00.000002Z","event":"listen","pid":1,"fd":4}\n')
    _, d = report_json(tmp("long.log"))
    return first_error(expect(d["input"]["skipped"]["oversized"], 1, "oversized"),
                       expect(d["input"]["events"]["listen"], 2, "lines around it"))


def t_report_top():
    _, d = report_json(os.path.join(SAMPLES, "sample.jsonl"), extra=("--top", "1"))
    return first_error(expect(len(d["worst_offenders"]), 1, "offender rows"),
                       expect(len(d["rst_per_peer_host"]), 1, "peer rows"))


def t_report_heavy_hitter():
    # 12000 peers with one RST each, one with 500: the bounded table must
    # still rank the heavy one first, and say its counts are upper bounds
    line = ('{"ts":"2026-11-21T10:00:00.%06dZ","event":"close","pid":1,"tid":1,"fd":5,'
            '"via":"close","role":"accepted","local":"127.0.0.1:80","peer":"%s:4000",'
            '"unread_bytes":1,"flags":["unread_data"],"rst":true,"duration_ms":1}\n')
    with open(tmp("heavy.log"), "w") as f:
        for i in range(12000):
            f.write(line % (i, "10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255)))
            if i % 24 == 0:
                f.write(line % (i, "192.0.2.1"))
    _, d = report_json(tmp("heavy.log"), extra=("--jobs", "2"))
    top = d["rst_per_peer_host"][0]
    return first_error(expect(top["host"], "192.0.2.1", "heaviest peer"),
                       None if top["rst_closes"] >= 500 else "count %d < 500" % top["rst_closes"],
                       expect(d["approximate"], True, "approximate"),
                       expect(d["closes"]["rst_true"], 12500, "exact total"))


def tagged_log(path, tag, closes):
    """One container's log: closes is a list of (flags, rst); tag None = no
    tag field (a process started without RSTSHIM_TAG)."""
    line = ('{"ts":"2026-11-21T10:00:%02d.000000Z","event":"close","pid":7,"tid":7,"fd":%d,'
            '"via":"close","role":"accepted","local":"10.1.0.1:80","peer":"10.2.0.1:4000",'
            '"flags":%s,"rst":%s,"duration_ms":1%s}\n')
    with open(path, "w") as f:
        f.write('{"ts":"2026-11-21T10:00:00.000000Z","event":"listen","pid":7,"fd":3,'
                '"local":"10.1.0.1:80"%s}\n' % (',"tag":"%s"' % tag if tag else ""))
        for i, (flags, rst) in enumerate(closes):
            f.write(line % (i + 1, 10 + i, json.dumps(flags), "true" if rst else "false",
                            ',"tag":"%s"' % tag if tag else ""))


def t_report_per_tag():
    # two pods and one untagged process: "-" collects the untagged lines
    tagged_log(tmp("pod-a.log"), "pod-a", [(["unread_data"], True)] * 3 + [([], False)])
    tagged_log(tmp("pod-b.log"), "pod-b", [(["linger_zero"], True), (["shared"], False)])
    tagged_log(tmp("untagged.log"), None, [([], False)])
    logs = (tmp("pod-a.log"), tmp("pod-b.log"), tmp("untagged.log"))
    _, d = report_json(*logs, extra=("--jobs", "2"))
    rows = {x["tag"]: (x["closes"], x["flagged"], x["rst_closes"], x["first"], x["last"])
            for x in d.get("per_tag", [])}
    pt = run([TOOL, "report", "--no-progress", *logs])
    text = pt.stdout.split("RSTs per tag (host):\n", 1)
    table = text[1].split("\n\n", 1)[0].splitlines()[1:] if len(text) == 2 else []
    text_rows = {w[0]: tuple(map(int, w[1:4])) for w in (l.split() for l in table)}
    _, plain = report_json(os.path.join(SAMPLES, "sample.jsonl"))
    plain_text = run([TOOL, "report", "--no-progress", os.path.join(SAMPLES, "sample.jsonl")])
    return first_error(
        expect(rows, {"pod-a": (4, 3, 3, "2026-11-21T10:00:00.000000Z",
                                "2026-11-21T10:00:04.000000Z"),
                      "pod-b": (2, 2, 1, "2026-11-21T10:00:00.000000Z",
                                "2026-11-21T10:00:02.000000Z"),
                      "-": (1, 0, 0, "2026-11-21T10:00:00.000000Z",
                            "2026-11-21T10:00:01.000000Z")},
               "per_tag (closes, flagged, rst, first, last)"),
        expect([x["tag"] for x in d["per_tag"]], ["pod-a", "pod-b", "-"], "ranked by closes"),
        expect(text_rows, {"pod-a": (4, 3, 3), "pod-b": (2, 2, 1), "-": (1, 0, 0)},
               "text per-tag rows (closes, flagged, rst)"),
        expect("per_tag" in plain, False, "per_tag in JSON of an untagged log"),
        None if "per tag" not in plain_text.stdout else "text of an untagged log has a tag table")


def stack_log(path):
    """Closes and a setsockopt as a shim with RSTSHIM_STACK=1 writes them:
    two causes, stacks repeated; frames past the 4th do not split a key."""
    A = ["/srv/app+0x1234 (handle_request)", "/srv/app+0x1400 (serve)",
         "/srv/app+0x1500 (main)", "/lib/x86_64-linux-gnu/libc.so.6+0x271ca"]
    B = ["/srv/app+0x2000 (reject)", "/srv/app+0x1500 (main)"]
    lines = [(["unread_data"], A + ["/srv/app+0x10 (_start)"], 11),
             (["unread_data"], A + ["/srv/app+0x20 (other)"], 12),
             (["unread_data"], A, 13),
             (["unread_data"], B, 14),
             (["immediate_close"], B, 15),
             (["immediate_close"], B, 16),
             (["shared"], None, 17)]
    with open(path, "w") as f:
        for i, (flags, stack, pid) in enumerate(lines):
            o = {"ts": "2026-11-22T03:40:%02d.000000Z" % i, "mono_ns": i, "event": "close",
                 "pid": pid, "tid": pid, "comm": "app", "fd": 4, "via": "close",
                 "role": "accepted", "local": "127.0.0.1:80", "peer": "127.0.0.1:5000",
                 "flags": flags, "rst": flags != ["shared"]}
            if stack:
                o["stack"] = stack
            f.write(json.dumps(o) + "\n")
        f.write(json.dumps({"ts": "2026-11-22T03:41:00.000000Z", "event": "setsockopt",
                            "pid": 12, "fd": 4, "flags": ["linger_zero"], "stack": B}) + "\n")
    return " < ".join(A), " < ".join(B)


def t_report_stacks():
    a, b = stack_log(tmp("stack.log"))
    _, d = report_json(tmp("stack.log"), extra=("--jobs", "2"))
    got = {c: [(x["stack"], x["count"]) for x in rows]
           for c, rows in d.get("stacks_per_cause", {}).items()}
    pt = run([TOOL, "report", "--no-progress", tmp("stack.log")])
    text = pt.stdout.split("Top stacks per cause", 1)
    text_rows, cause = {}, None
    for line in (text[1].split("\n\n", 1)[0].splitlines()[1:] if len(text) == 2 else []):
        if not line.startswith("    "):
            cause = line.strip().rstrip(":")
        elif not line.split()[0] == "count":
            count, pid, stack = line.split(None, 2)
            text_rows.setdefault(cause, []).append((stack, int(count), int(pid)))
    _, plain = report_json(os.path.join(SAMPLES, "sample.jsonl"))
    plain_text = run([TOOL, "report", "--no-progress", os.path.join(SAMPLES, "sample.jsonl")])
    return first_error(
        expect(got, {"unread_data": [(a, 3), (b, 1)], "immediate_close": [(b, 2)],
                     "setsockopt_linger_zero": [(b, 1)]}, "stacks_per_cause (stack, count)"),
        expect(d["stacks_per_cause"]["unread_data"][0]["pid"] in (11, 12, 13), True,
               "example pid"),
        expect({c: [(s, n) for s, n, _ in rows] for c, rows in text_rows.items()}, got,
               "text stack rows"),
        expect(plain.get("stacks_per_cause"), {}, "stacks_per_cause of a log without stacks"),
        None if "Top stacks" not in plain_text.stdout else "text of a log without stacks "
                                                           "has a stack table")


SYMBOLIZE = os.path.join(ROOT, "scripts", "symbolize.py")


def t_symbolize():
    # a real program built with -g: nm gives marker_fn's offset (PIE) or
    # its address (non-PIE, base = lowest PT_LOAD); the script must name
    # marker_fn at the source line of its definition
    for tool in ("gcc", "nm", "addr2line", "readelf", "strip"):
        if not shutil.which(tool):
            raise Skip("%s not installed" % tool)
    src = tmp("sym.c")
    with open(src, "w") as f:
        f.write("#include <stdio.h>\n"
                "__attribute__((noinline)) static int marker_fn(int x) {\n"
                "    return x * 3 + 1;\n"
                "}\n"
                "int main(int argc, char **argv) { (void)argv; printf(\"%d\\n\", marker_fn(argc));"
                " return 0; }\n")
    frames, want = [], []
    for name, flags in (("sym-pie", ["-fPIE", "-pie"]), ("sym-nopie", ["-fno-PIE", "-no-pie"])):
        prog = tmp(name)
        run(["gcc", "-g", "-O0", *flags, "-o", prog, src], check=True)
        out = run([prog])
        if out.stdout != "4\n":
            return "%s printed %r" % (name, out.stdout)
        addr = int(next(l.split()[0] for l in run(["nm", prog]).stdout.splitlines()
                        if l.endswith(" marker_fn")), 16)
        if name == "sym-nopie":  # an EXEC: the frame's offset is from the lowest PT_LOAD
            hdr = run(["readelf", "-lW", prog]).stdout
            addr -= min(int(l.split()[2], 16) for l in hdr.splitlines()
                        if l.split()[:1] == ["LOAD"])
        frames.append("%s+0x%x (marker_fn)" % (prog, addr))
        want.append("marker_fn at %s:2" % src)
    stripped = tmp("sym-stripped")
    run(["strip", "-g", "-o", stripped, tmp("sym-pie")], check=True)
    frames += [frames[0].replace(tmp("sym-pie"), stripped), "?+0x10"]
    want += frames[2:]  # no debug info, no object: kept as they were
    line = json.dumps({"ts": "2026-11-22T03:40:00.000000Z", "event": "close", "pid": 1,
                       "flags": ["unread_data"], "stack": frames})
    with open(tmp("sym.log"), "w") as f:
        f.write(line + "\nnot json\n")
    pj = run([sys.executable, SYMBOLIZE, "--json", tmp("sym.log")])
    pt = run([sys.executable, SYMBOLIZE], input=line + "\n")
    out = pj.stdout.splitlines()
    return first_error(
        expect(pj.returncode, 0, "exit status (--json)"),
        expect(json.loads(out[0]).get("stack_lines") if out else None, want, "stack_lines"),
        expect(json.loads(out[0]).get("stack") if out else None, frames, "stack kept"),
        expect(out[1:], ["not json"], "other lines passed through"),
        expect([l.strip() for l in pt.stdout.splitlines()[1:]],
               ["#%d %s" % (i, w) for i, w in enumerate(want)], "text frames"))


def t_report_bad_option():
    p = run([TOOL, "report", "--frobnicate"])
    return expect(p.returncode, 2, "exit status")


def gen(size_mb, name, *extra):
    path = tmp(name)
    if not os.path.exists(path):
        run([sys.executable, GENLOG, str(size_mb), path, *extra], timeout=300, check=True)
    return path


def t_report_threads_agree():
    # parallel parsing merges shards: the exact totals must not depend on it
    path = gen(20, "gen20.log", "--junk")
    _, one = report_json(path, extra=("--jobs", "1"))
    _, two = report_json(path, extra=("--jobs", "3"))
    for key in ("input", "closes", "causes", "lifetime_ms", "peer_reset", "accept_error"):
        if one[key] != two[key]:
            return "%s differs between --jobs 1 and --jobs 3" % key
    if one["input"]["skipped"]["total"] == 0:
        return "the generated junk was not skipped"


def t_report_throughput():
    path = gen(100, "gen100.log")
    size = os.path.getsize(path)
    t0 = time.monotonic()
    p = run([TOOL, "report", "--json", "--no-progress", path], timeout=300)
    dt = time.monotonic() - t0
    rate = size / 1e6 / dt
    print("  report: %.0f MB in %.2f s = %.0f MB/s (%d CPUs)" % (size / 1e6, dt, rate,
                                                                os.cpu_count() or 1))
    if p.returncode != 0:
        return "exit status %d" % p.returncode
    if rate < 10:  # generous: ~50 MB/s on 2 cores here; 1 GB in <100 s at worst
        return "%.1f MB/s is too slow" % rate
    if not json.loads(p.stdout)["approximate"]:
        return "over 4096 distinct peer hosts, yet the tables do not say they are approximate"


def t_report_progress():
    # A progress line on stderr once reading has lasted 2 s (checked at every
    # 4 MiB block): a 20 MB log fed through a pipe with a 2.5 s pause between
    # its halves, so that the read lasts that long on any machine; none with
    # --no-progress.
    with open(gen(20, "gen20.log", "--junk"), "rb") as f:
        data = f.read()
    half = len(data) // 2
    seen = {}
    for flag in ("", "--no-progress"):
        p = subprocess.Popen([TOOL, "report", "--json", "--jobs", "1"] + ([flag] if flag else []),
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        try:
            p.stdin.write(data[:half])
            p.stdin.flush()
            time.sleep(2.5)
            p.stdin.write(data[half:])
            p.stdin.close()
            seen[flag] = p.stderr.read().decode()
            p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    if not re.search(r"rstshim report: \S+: [0-9.]+ MB read, [0-9.]+ [kMG]?B/s", seen[""]):
        return "no progress line after 2.5 s of reading: %r" % seen[""][-300:]
    if "rstshim report:" in seen["--no-progress"]:
        return "a progress line despite --no-progress: %r" % seen["--no-progress"][-300:]


# -------------------------------------------------------------------- run

def fake_lib():
    """A do-nothing shared object standing in for the shim, so the `run`
    checks do not depend on the library being built."""
    so = tmp("libfake.so")
    if not os.path.exists(so):
        src = tmp("fake.c")
        with open(src, "w") as f:
            f.write("int rstshim_fake_symbol;\n")
        run(["cc", "-shared", "-fPIC", "-o", so, src], check=True)
    return so


def t_run_exit_status():
    p = run([TOOL, "--lib", fake_lib(), "--", "sh", "-c", "exit 7"])
    p2 = run([TOOL, "run", "--lib", fake_lib(), "--", "sh", "-c", "exit 0"])
    return first_error(expect(p.returncode, 7, "exit 7"), expect(p2.returncode, 0, "exit 0"))


def t_run_killed_by_signal():
    p = run([TOOL, "--lib", fake_lib(), "--", "sh", "-c", "kill -TERM $$"])
    return expect(p.returncode, 143, "child killed by SIGTERM")


def forwarded(sig):
    marker = tmp("got-%d" % sig)
    script = ('trap "echo got > %s; exit 42" %s; echo ready; '
              'i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done' % (marker, sig.name[3:]))
    p = subprocess.Popen([TOOL, "--lib", fake_lib(), "--", "sh", "-c", script],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         restore_signals=True)
    try:
        p.stdout.readline()  # "ready": the trap is set
        p.send_signal(sig)
        rc = p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return first_error(expect(rc, 42, "exit status after %s" % sig.name),
                       None if os.path.exists(marker) else "the child did not get %s" % sig.name)


def t_run_forwards_sigterm():
    return forwarded(signal.SIGTERM)


def t_run_forwards_sigusr1():
    return forwarded(signal.SIGUSR1)


def t_run_environment():
    env = dict(os.environ, LD_PRELOAD="")
    os.makedirs(tmp("cwd"), exist_ok=True)
    p = run([TOOL, "--lib", fake_lib(), "-o", "rel.log", "--flagged", "--immediate-ms", "250",
             "--", "sh", "-c", 'echo "$LD_PRELOAD|$RSTSHIM_LOG|$RSTSHIM_EVENTS|$RSTSHIM_IMMEDIATE_MS"'],
            cwd=tmp("cwd"), env=env)
    want = "%s|%s|flagged|250" % (os.path.realpath(fake_lib()), os.path.join(tmp("cwd"), "rel.log"))
    return first_error(expect(p.stdout.strip(), want, "environment"),
                       None if "rstshim: " in p.stderr else "no summary for a file log")


def t_run_preload_prepended():
    other = "/lib/x86_64-linux-gnu/libm.so.6" if os.path.exists(
        "/lib/x86_64-linux-gnu/libm.so.6") else fake_lib()
    env = dict(os.environ, LD_PRELOAD=other)
    p = run([TOOL, "--lib", fake_lib(), "--", "sh", "-c", 'echo "$LD_PRELOAD"'], env=env)
    return expect(p.stdout.strip(), os.path.realpath(fake_lib()) + ":" + other, "LD_PRELOAD")


def t_run_errors():
    nf = run([TOOL, "--lib", fake_lib(), "--", tmp("no-such-program")])
    noexec = run([TOOL, "--lib", fake_lib(), "--", os.path.join(SAMPLES, "sample.jsonl")])
    nolib = run([TOOL, "--lib", tmp("no-such-lib.so"), "--", "true"])
    usage = run([TOOL, "--no-such-option", "--", "true"])
    bad_ms = run([TOOL, "--immediate-ms", "soon", "--", "true"])
    return first_error(expect(nf.returncode, 127, "command not found"),
                       expect(noexec.returncode, 126, "not executable"),
                       expect(nolib.returncode, 127, "library not found"),
                       expect(usage.returncode, 2, "unknown option"),
                       expect(bad_ms.returncode, 2, "bad --immediate-ms"))


def t_run_warns_static():
    exe = tmp("static-prog")
    src = tmp("static.c")
    with open(src, "w") as f:
        f.write("int main(void) { return 5; }\n")
    if run(["cc", "-static", "-o", exe, src]).returncode != 0:
        raise Skip("cannot link statically here (no libc.a)")
    p = run([TOOL, "--lib", fake_lib(), "--", exe])
    dyn = run([TOOL, "--lib", fake_lib(), "--", "true"])
    return first_error(expect(p.returncode, 5, "exit status"),
                       None if "statically linked" in p.stderr else "no static warning",
                       None if "statically" not in dyn.stderr else "warned for a dynamic program")


def t_run_warns_setuid():
    exe = tmp("suid-true")
    shutil.copy("/bin/true", exe)
    os.chmod(exe, 0o4755)
    if not os.stat(exe).st_mode & 0o4000:
        raise Skip("cannot set the setuid bit here")
    p = run([TOOL, "--lib", fake_lib(), "--", exe])
    return None if "setuid" in p.stderr else "no setuid warning: %r" % p.stderr


def t_run_finds_library_beside():
    need_lib()
    p = run([TOOL, "--", "sh", "-c", 'echo "$LD_PRELOAD"'], env=dict(os.environ, LD_PRELOAD=""))
    return expect(p.stdout.strip(), os.path.realpath(LIB), "library found beside rstshim")


# ----------------------------------------------------------------- doctor

DOCTOR_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPAbortOnClose", "TCPAbortOnData",
                   "TCPAbortOnLinger", "TCPAbortOnMemory", "TCPAbortOnTimeout")
DOCTOR_LIMITS = ("ulimit -n (soft)", "ulimit -n (hard)", "net.core.somaxconn",
                 "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_abort_on_overflow",
                 "net.ipv4.tcp_fin_timeout")


def t_doctor():
    p = run([TOOL, "doctor"])
    if p.returncode != 0:
        return "exit status %d" % p.returncode
    values = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^\s+(\S.*?)\s{2,}(\S+)\s{2}(\S.*)$", line)
        if m:
            values[m.group(1)] = (m.group(2), m.group(3))
    for name in DOCTOR_COUNTERS:
        if name not in values:
            return "counter %s missing" % name
        if not values[name][0].isdigit():
            return "counter %s is %r, not a number" % (name, values[name][0])
    for name in DOCTOR_LIMITS:
        if name not in values:
            return "limit %s missing" % name
        v = values[name][0]
        if not (v.isdigit() or v == "unlimited"):
            return "%s is %r" % (name, v)
    if any(len(meaning) < 15 for _, meaning in values.values()):
        return "a line without its meaning"


# ------------------------------------------------------ with the real shim

def t_demo_and_report():
    need_lib()
    if not (os.path.exists(SERVERS) and os.path.exists(CLIENTS)):
        raise Skip("demo binaries not built (make build/demo/servers build/demo/clients)")
    logs = tmp("demo-logs")
    p = run(["bash", os.path.join(ROOT, "demo", "run-demo.sh"), "--keep-logs", logs],
            timeout=120)
    if p.returncode != 0:
        tail = "\n".join(p.stdout.splitlines()[-3:])
        return "make demo failed (rc %d): %s" % (p.returncode, tail)
    if not re.search(r"^demo: 8 scenarios, 8 showed", p.stdout, re.M):
        return "no final demo line"
    files = sorted(os.path.join(logs, f) for f in os.listdir(logs))
    _, d = report_json(*files)
    causes = {k: v["closes"] for k, v in d["causes"].items()}
    return first_error(
        expect(d["input"]["files"], 8, "logs"),
        expect(d["input"]["skipped"]["total"], 0, "skipped lines in the shim's own logs"),
        expect((causes["unread_data"], causes["linger_zero"], causes["immediate_close"],
                causes["recv_timeout"]), (1, 1, 1, 1), "one close per simple cause"),
        expect(causes["pending_connections"], 2, "pending_connections (scenarios 5 and 6)"),
        expect(d["input"]["events"]["listen"], 8, "one listener per scenario"),
        expect(list(d["accept_error"]["by_errno"]), ["EMFILE"], "accept errors"),
        expect(d["setsockopt_linger_zero"], 1, "setsockopt linger_zero"),
        None if d["lifetime_ms"]["count"] > 0 else "no lifetimes")


def t_run_demo_server_summary():
    need_lib()
    if not os.path.exists(SERVERS):
        raise Skip("demo binaries not built")
    log = tmp("run-mismatch.log")
    srv = subprocess.Popen([TOOL, "-o", log, "--", SERVERS, "mismatch"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = srv.stdout.readline().split()[1]
        cli = run([CLIENTS, "mismatch", port], timeout=20)
        out, err = srv.communicate(timeout=20)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    return first_error(expect(srv.returncode, 0, "server exit status"),
                       None if "Connection reset by peer" in cli.stdout
                       else "client saw no reset: %r" % cli.stdout,
                       None if "unread_data 1" in err else "summary lacks unread_data: %r" % err,
                       None if "RSTs at close: 1" in err else "summary lacks the RST count")


CHECKS = [
    ("version", t_version),
    ("help", t_help),
    ("report sample: counts per cause and rst", t_report_sample_counts),
    ("report sample: listener, peer, offender tables", t_report_sample_tables),
    ("report: a listener shutdown(SHUT_RD) resets its queue", t_report_listener_shutdown),
    ("report sample: lifetime percentiles", t_report_sample_lifetime),
    ("report sample: peer_reset, accept_error, config_error", t_report_sample_errors),
    ("report text output", t_report_text),
    ("report malformed input (truncated, not JSON, foreign)", t_report_malformed),
    ("report empty file", t_report_empty),
    ("report stdin", t_report_stdin),
    ("report several %p files", t_report_split_files),
    ("report missing file", t_report_missing_file),
    ("report line longer than a block", t_report_oversized_line),
    ("report --top", t_report_top),
    ("report bad option", t_report_bad_option),
    ("report bounded tables keep the heavy hitter", t_report_heavy_hitter),
    ("report per tag (host): text and --json", t_report_per_tag),
    ("report top stacks per cause: text and --json", t_report_stacks),
    ("scripts/symbolize.py names frames by file:line", t_symbolize),
    ("report threads agree", t_report_threads_agree),
    ("report throughput", t_report_throughput),
    ("report progress", t_report_progress),
    ("run exit status passes through", t_run_exit_status),
    ("run child killed by SIGTERM -> 143", t_run_killed_by_signal),
    ("run SIGTERM reaches the child", t_run_forwards_sigterm),
    ("run SIGUSR1 reaches the child", t_run_forwards_sigusr1),
    ("run environment and log path", t_run_environment),
    ("run LD_PRELOAD prepended", t_run_preload_prepended),
    ("run errors: not found, not executable, no library, usage", t_run_errors),
    ("run warns on a static program", t_run_warns_static),
    ("run warns on a setuid program", t_run_warns_setuid),
    ("run finds the library beside itself", t_run_finds_library_beside),
    ("doctor output parsed", t_doctor),
    ("demo logs through report", t_demo_and_report),
    ("run a demo server: summary", t_run_demo_server_summary),
]


def explain_checks(only):
    """test_explain.py (it enters its own network namespace as root): its
    PASS/FAIL/SKIP lines are relayed and counted here."""
    script = os.path.join(ROOT, "tests", "tool", "test_explain.py")
    sel = [o for o in only if "explain" in o] if only else []
    if only and not sel:
        return
    p = subprocess.run([sys.executable, script, *sel], capture_output=True, text=True,
                       timeout=120)
    seen = fails = 0
    for line in p.stdout.splitlines():
        for status in ("PASS", "FAIL", "SKIP"):
            if line.startswith(status + " "):
                rest = line[len(status) + 1:]
                name, _, why = rest.partition(": ")
                report(status, name, why)
                seen += 1
                fails += status == "FAIL"
    if p.returncode != 0 and not fails:
        report("FAIL", "explain suite", "exit %d: %s" % (p.returncode, p.stderr.strip()[-500:]))
    elif not seen:
        report("FAIL", "explain suite", "no result lines: %s" % p.stderr.strip()[-500:])


def main():
    if not os.access(TOOL, os.X_OK):
        print("FAIL build: %s missing (make build/rstshim)" % TOOL)
        print("0 passed, 1 failed, 0 skipped")
        return 1
    only = sys.argv[1:]
    try:
        for name, fn in CHECKS:
            if only and not any(o in name for o in only):
                continue
            check(name, fn)
        explain_checks(only)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print("%d passed, %d failed, %d skipped" % (results["passed"], results["failed"],
                                                 results["skipped"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
