#!/usr/bin/env python3
"""Name the call stacks of an rstshim log (RSTSHIM_STACK=1) by source line.

usage: symbolize.py [--json] [LOG...]     (stdin when no LOG, or '-')

Each "stack" frame of a line, "/abs/object+0xOFFSET (symbol)", is turned
into "function at file:line" with binutils' addr2line (-f -C -i: demangled,
inlined calls shown as "f at a.c:3, inlined into g at a.c:10").  A frame
addr2line cannot answer for (no debug info, object gone, "?+0x..." frames)
is kept as it was.

OFFSET is the address minus the object's load base (dladdr's dli_fbase):
the object's lowest PT_LOAD address is added back, which for a non-PIE
executable (ELF type EXEC, from readelf -hl) is its link address and for a
PIE or shared library is normally 0.  The shim already logs the call
instruction (return address - 1), so offsets are used as they are.

Text (default): each line with a stack is printed without it, followed by
one indented "#N frame" line per frame; other lines pass through as they
are.  --json: every line stays JSON; lines with a stack gain "stack_lines",
the frames rewritten (one string per frame, in the same order).
Python 3 standard library only; needs addr2line and readelf (binutils).
"""
import json
import os
import re
import subprocess
import sys

FRAME = re.compile(r"^(?P<obj>/.*?)\+0x(?P<off>[0-9a-fA-F]+)(?: \((?P<sym>.*)\))?$")

_base_cache = {}
_line_cache = {}


def load_base(obj):
    """The lowest PT_LOAD vaddr of obj (0 for a usual PIE or .so), or None
    when obj cannot be read as ELF."""
    if obj in _base_cache:
        return _base_cache[obj]
    base = None
    try:
        out = subprocess.run(["readelf", "-h", "-l", "-W", obj], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    kind = re.search(r"^\s*Type:\s+(\w+)", out, re.M)
    loads = [int(m.group(1), 16)
             for m in re.finditer(r"^\s*LOAD\s+0x[0-9a-fA-F]+\s+0x([0-9a-fA-F]+)", out, re.M)]
    if kind and loads:
        # EXEC: dli_fbase is the link address of the first segment; DYN:
        # dli_fbase maps the first segment too, whose vaddr is normally 0.
        base = min(loads)
    _base_cache[obj] = base
    return base


def addr2line(obj, addrs):
    """{addr: description or None} for the addresses (ints) in obj."""
    todo = sorted({a for a in addrs if (obj, a) not in _line_cache})
    if todo:
        try:
            out = subprocess.run(["addr2line", "-a", "-f", "-C", "-i", "-e", obj] +
                                 ["0x%x" % a for a in todo], capture_output=True, text=True,
                                 timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        # -a: each answer starts with the address, then (function, file:line)
        # pairs, innermost inlined function first.
        answers, cur = {}, None
        lines = out.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if re.match(r"^0x[0-9a-fA-F]+$", line):
                cur = int(line, 16)
                answers[cur] = []
                i += 1
                continue
            if cur is not None and i + 1 < len(lines):
                answers[cur].append((line, lines[i + 1]))
            i += 2
        for a in todo:
            _line_cache[(obj, a)] = describe(answers.get(a, []))
    return {a: _line_cache[(obj, a)] for a in addrs}


def describe(pairs):
    parts = []
    for func, where in pairs:
        where = re.sub(r" \(discriminator \d+\)$", "", where)
        if where.startswith("??") or where.endswith(":0") or where.endswith(":?"):
            if not parts:
                return None  # no line information: keep the original frame
            break
        parts.append("%s at %s" % (func if func != "??" else "(unknown)", where))
    return ", inlined into ".join(parts) if parts else None


def symbolize(frames):
    """The frames rewritten (unknown ones kept as they are)."""
    out = list(frames)
    wanted = {}
    for i, f in enumerate(frames):
        m = FRAME.match(f) if isinstance(f, str) else None
        if not m:
            continue
        base = load_base(m.group("obj"))
        if base is None:
            continue
        wanted.setdefault(m.group("obj"), []).append((i, int(m.group("off"), 16) + base))
    for obj, items in wanted.items():
        names = addr2line(obj, [a for _, a in items])
        for i, a in items:
            if names.get(a):
                out[i] = names[a]
    return out


def process(stream, as_json, write):
    for raw in stream:
        line = raw.rstrip("\n")
        try:
            o = json.loads(line)
        except ValueError:
            o = None
        stack = o.get("stack") if isinstance(o, dict) else None
        if not isinstance(stack, list) or not stack:
            write(line + "\n")
            continue
        named = symbolize(stack)
        if as_json:
            o["stack_lines"] = named
            write(json.dumps(o, separators=(",", ":")) + "\n")
        else:
            del o["stack"]
            write(json.dumps(o, separators=(",", ":")) + "\n")
            for n, frame in enumerate(named):
                write("    #%d %s\n" % (n, frame))


def main(argv):
    as_json = False
    files = []
    for a in argv:
        if a == "--json":
            as_json = True
        elif a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        elif a.startswith("-") and a != "-":
            print("symbolize.py: unknown option %s" % a, file=sys.stderr)
            return 2
        else:
            files.append(a)
    rc = 0
    for name in files or ["-"]:
        try:
            if name == "-":
                process(sys.stdin, as_json, sys.stdout.write)
            else:
                with open(name, errors="replace") as f:
                    process(f, as_json, sys.stdout.write)
        except BrokenPipeError:
            return rc
        except OSError as e:
            print("symbolize.py: %s: %s" % (name, e.strerror), file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
