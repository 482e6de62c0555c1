#!/usr/bin/env python3
"""bench/perf_attrib.py SHIM < `perf script --no-inline -F comm,tid,ip,sym,dso` output

Splits a server's samples into "the shim's own cost" and the rest, from the
call chains.  A sample is the shim's when the innermost frame that belongs to
librstshim.so is one of its internal functions (a probe, the line builder,
jansson, the log writer: everything they call, kernel included, is the shim's
doing), or when the sample is in the shim itself.  A sample whose innermost
shim frame is an exported wrapper (close, read, accept4, ...), or a shim
function calling libc's own version of a wrapped call (a wrapper's body it
tail-called, like accept_common; not the log writer's write), is the real call
the wrapper passes on: the host's own cost.

Prints the shim's share of all samples, then the shares by phase (the
wrapper and the two outermost internal shim functions under it), by the
syscall or library function it ends in, and by the innermost shim function.
"""
import collections
import subprocess
import sys


def exported(shim):
    out = subprocess.run(["nm", "-D", "--defined-only", shim], capture_output=True, text=True)
    return {line.split()[-1].split("@")[0] for line in out.stdout.splitlines() if line.strip()}


def samples(stream):
    frames = []
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield frames
            frames = []
            continue
        if not line.startswith("\t") and not line.startswith(" "):
            if frames:
                yield frames
            frames = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        sym, _, dso = rest.rpartition(" (")
        frames.append((sym.split("+")[0], dso.rstrip(")")))
    if frames:
        yield frames


def syscall_of(frames):
    """What a sample under the shim ends in: the syscall (the kernel frame just
    inside do_syscall_64), or the user-space function of the leaf."""
    kernel = [f[0] for f in frames if f[1] == "[kernel.kallsyms]"]
    for i, sym in enumerate(kernel):
        if sym not in ("do_syscall_64", "entry_SYSCALL_64_after_hwframe"):
            continue
        j = i - 1
        while j > 0 and kernel[j] == "x64_sys_call":
            j -= 1
        if j < 0:
            break
        name = kernel[j]
        if name == "exit_to_user_mode_loop":
            return "kernel: returning to user space (preempted / signal)"
        for prefix in ("__x64_sys_", "__do_sys_", "__se_sys_", "ksys_", "__sys_", "do_sys_"):
            if name.startswith(prefix):
                return "syscall " + name[len(prefix):]
        return "kernel " + name
    if kernel:
        return "kernel (interrupt)"
    sym, dso = frames[0]
    return "user %s: %s" % (dso.rsplit("/", 1)[-1], sym)


def libc_name(sym):
    """libc's internal names for a function: __GI___libc_read, __libc_accept4, __close_nocancel."""
    for prefix in ("__GI___libc_", "__GI___", "__GI_", "__libc_", "__"):
        if sym.startswith(prefix):
            sym = sym[len(prefix):]
            break
    return sym[:-len("_nocancel")] if sym.endswith("_nocancel") else sym


def real_call(callee, caller, wrappers):
    """A shim function calling libc's own version of a wrapped call: the real call a wrapper
    (or a body it tail-called, like accept_common) passes on.  The log writer's write(2) is
    the shim's own."""
    sym, dso = callee
    if "libc.so" not in dso or libc_name(sym) not in wrappers:
        return False
    return not caller.startswith(("log_", "write_without_sigpipe"))


def main():
    shim = sys.argv[1]
    wrappers = exported(shim)
    total = 0
    shim_n = 0
    complete = 0
    by_phase = collections.Counter()
    by_sys = collections.Counter()
    by_inner = collections.Counter()
    for frames in samples(sys.stdin):
        total += 1
        if any(s in ("_start", "main", "__libc_start_call_main") for s, _ in frames):
            complete += 1
        idx = [i for i, (_, d) in enumerate(frames) if d.endswith("librstshim.so")]
        if not idx:
            continue
        inner = idx[0]
        sym = frames[inner][0]
        if inner > 0 and (sym in wrappers or real_call(frames[inner - 1], sym, wrappers)):
            continue  # the real call
        shim_n += 1
        internal = [frames[i][0] for i in idx if frames[i][0] not in wrappers]
        wrapper = next((frames[i][0] for i in reversed(idx) if frames[i][0] in wrappers), None)
        phase = " > ".join(reversed(internal[-2:])) if internal else "(self)"
        # a wrapper that tail-calls its body leaves no frame of its own
        by_phase["%s > %s" % (wrapper, phase) if wrapper else phase] += 1
        by_sys[syscall_of(frames)] += 1
        by_inner[sym] += 1
    if not total:
        print("   no samples")
        return
    pct = lambda n: 100.0 * n / total
    in_kernel = sum(n for k, n in by_sys.items() if not k.startswith("user "))
    print("   shim's own cost: %.1f%% of %d samples (%.1f%% in the kernel, %.1f%% in user space;"
          " %.0f%% of samples with whole call chains)"
          % (pct(shim_n), total, pct(in_kernel), pct(shim_n - in_kernel),
             100.0 * complete / total))
    for title, counter in (("by phase (wrapper > outermost shim functions)", by_phase),
                           ("by what it ends in", by_sys),
                           ("by innermost shim function", by_inner)):
        print("   %s:" % title)
        for key, n in counter.most_common(10):
            if pct(n) >= 0.2:
                print("     %5.1f%%  %s" % (pct(n), key))


if __name__ == "__main__":
    main()
