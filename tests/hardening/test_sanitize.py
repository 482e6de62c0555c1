#!/usr/bin/env python3
"""The shim under the sanitizers (issue 5, `make test-sanitize`).

- build/hardening/host_asan and host_tsan are tests/hardening/host.c linked
  with the shim's own sources (the executable defines close/recv/...; the
  shim's dlsym(RTLD_NEXT) finds the sanitizer's interceptor or libc behind
  them): the threaded model test and a fork/exec/spawn/vfork/signal mix run
  under ASan+UBSan and under TSan; any report with a frame in shim/ fails,
  and its first stack is printed.
- valgrind memcheck on preloaded runs of build/tests/shim_calls and the host.
- libFuzzer on config_parse()/config_expand_path() (tests/hardening/fuzz_config.c)
  when clang and its fuzzer runtime are there (installed when root).
"""
import glob
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hardening_lib import (BUILD, HDIR, HOST, ROOT, SHIM, Results, check_model, run,  # noqa: E402
                           run_tests)

R = Results("sanitize")
ASAN = os.path.join(HDIR, "host_asan")
ASAN_BARE = os.path.join(HDIR, "host_asan_bare")
TSAN = os.path.join(HDIR, "host_tsan")
SHIM_CALLS = os.path.join(BUILD, "tests", "shim_calls")
FUZZ = os.path.join(HDIR, "fuzz_config")
FUZZ_SRC = os.path.join(ROOT, "tests", "hardening", "fuzz_config.c")
IS_ROOT = os.geteuid() == 0

SAN_ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:abort_on_error=0:detect_leaks=0:allow_user_segv_handler=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "TSAN_OPTIONS": "halt_on_error=1 second_deadlock_stack=1",
}

REPORT_START = re.compile(r"^(==\d+==ERROR: AddressSanitizer|WARNING: ThreadSanitizer|"
                          r".*runtime error:|==\d+==ERROR: UndefinedBehaviorSanitizer)")


def reports(stderr):
    """Sanitizer reports in stderr: a list of (headline, stack lines, from_shim)."""
    out = []
    lines = stderr.decode(errors="replace").splitlines()
    i = 0
    while i < len(lines):
        if REPORT_START.match(lines[i]):
            head = lines[i]
            stack = []
            j = i + 1
            while j < len(lines) and not lines[j].startswith("SUMMARY") and j < i + 80:
                stack.append(lines[j])
                j += 1
            summary = lines[j] if j < len(lines) else ""
            text = "\n".join([head] + stack + [summary])
            out.append((head + " | " + summary, stack, "shim/" in text or "/shim/" in text))
            i = j
        i += 1
    return out


def first_stack(found):
    head, stack, _ = found[0]
    frames = [l for l in stack if l.strip().startswith("#") or "Previous" in l
              or "Write" in l or "Read" in l or "thread" in l.lower()][:24]
    return head + "\n    " + "\n    ".join(frames)


def sanitized(name, binary, args, tmp, timeout=60, extra_env=None, model_prefix=None,
              expect_forks=False):
    env = dict(SAN_ENV)
    env["RSTSHIM_LOG"] = os.path.join(tmp, f"{name}.%p.jsonl")
    env.update(extra_env or {})
    p = run([binary] + args, env=env, preload=False, timeout=timeout)
    found = reports(p.stderr)
    shim_found = [r for r in found if r[2]]
    detail = first_stack(shim_found or found) if found else repr(p)
    R.check(f"{name}: no sanitizer report from shim code (exit {p.returncode}"
            f"{', timed out' if p.timed_out else ''})",
            not shim_found and p.returncode == 0 and not p.timed_out, detail)
    if found and not shim_found:
        print(f"  note: {len(found)} report(s) outside shim/: {found[0][0]}")
    if model_prefix and p.returncode == 0:
        check_model(model_prefix, os.path.join(tmp, f"{name}.*.jsonl"), p.stdout, R, name,
                    expect_forks=expect_forks)
    return p


def test_asan(tmp):
    if not os.path.exists(ASAN):
        R.check("ASan+UBSan build", False, f"{ASAN} missing: run `make test-sanitize`")
        return
    prefix = os.path.join(tmp, "asan-model")
    sanitized("ASan+UBSan threads model (8 threads, no fork)", ASAN,
              ["model", prefix, "8", "2", "15000", "11", "0"], tmp, model_prefix=prefix)
    sanitized("ASan+UBSan fork/exec/posix_spawn/vfork + SIGALRM handler closing and receiving",
              ASAN, ["mix", "2", "1", "0", "1"], tmp)
    sanitized("ASan+UBSan fork/exec/posix_spawn while 3 threads connect/accept/dup/close",
              ASAN, ["mix", "2", "0", "3", "0"], tmp)


def test_asan_fork_in_threads(tmp):
    """A multithreaded host that forks and has the child _exit at once (all
    async-signal-safe) must not hang: under the shim the child runs jansson
    and malloc before _exit.  ASan's allocator, unlike glibc's, is not made
    fork-safe: a lock another thread held at the fork stays held."""
    if not os.path.exists(ASAN):
        return
    bare = run([ASAN_BARE, "model", os.path.join(tmp, "bare"), "8", "2", "15000", "3", "1"],
               env=SAN_ENV, preload=False, timeout=40) if os.path.exists(ASAN_BARE) else None
    p = run([ASAN, "model", os.path.join(tmp, "forky"), "8", "2", "15000", "3", "1"],
            env=dict(SAN_ENV, RSTSHIM_LOG=os.path.join(tmp, "forky.%p.jsonl")), preload=False,
            timeout=20)
    stuck = ""
    if p.timed_out:
        stuck = ("\n  (a forked child of the 8-thread host hung: the shim's _exit wrapper builds "
                 "close lines with jansson/malloc in the child of a multithreaded fork, where only "
                 "async-signal-safe calls are allowed; the sanitizer allocator's lock, held by a "
                 "parent thread at the fork, is never released in the child)")
    R.check("ASan+UBSan: an 8-thread host forking children that _exit at once does not hang "
            "(it does not bare, with the same ASan runtime)",
            p.returncode == 0 and not p.timed_out and (bare is None or bare.returncode == 0),
            f"bare (ASan, no shim): {bare}\nwith the shim: {p}{stuck}")


def test_tsan(tmp):
    if not os.path.exists(TSAN):
        R.check("TSan build", False, f"{TSAN} missing: run `make test-sanitize`")
        return
    prefix = os.path.join(tmp, "tsan-model")
    sanitized("TSan threads model (8 threads, no fork)", TSAN,
              ["model", prefix, "8", "2", "15000", "13", "0"], tmp, model_prefix=prefix)
    sanitized("TSan threads model with forks (atfork handlers against live threads)", TSAN,
              ["model", os.path.join(tmp, "tsan-forks"), "8", "2", "15000", "3", "1"], tmp)
    sanitized("TSan fork/exec/posix_spawn while 3 threads connect/accept/dup/close", TSAN,
              ["mix", "2", "0", "3", "0"], tmp)
    # TSan cannot follow vfork's shared memory (it turns vfork into fork itself): no vfork here
    sanitized("TSan SIGALRM handler closing and receiving, fork/exec/posix_spawn", TSAN,
              ["mix", "2", "0", "0", "1"], tmp)
    sanitized("TSan SIGALRM every 200 us: the handler closes and receives while the main loop "
              "accepts, receives and closes", TSAN,
              ["sigstorm", os.path.join(tmp, "tsan-storm.json"), "2", "0"], tmp)


def valgrind_errors(stderr):
    text = stderr.decode(errors="replace")
    m = re.findall(r"ERROR SUMMARY: (\d+) errors", text)
    first = ""
    blocks = re.split(r"\n==\d+== \n", text)
    for b in blocks:
        if re.search(r"Invalid|uninitialised|Conditional jump|Syscall param|Mismatched|overlap",
                     b):
            first = b.strip()[:1500]
            break
    return [int(x) for x in m], first


def test_valgrind(tmp):
    if not shutil.which("valgrind"):
        R.skip("valgrind memcheck", "valgrind is not installed (apt-get install valgrind)")
        return
    vg = ["valgrind", "--error-exitcode=99", "--leak-check=no", "--child-silent-after-fork=no",
          "--trace-children=no"]
    runs = [("shim_calls threads 4 200", [SHIM_CALLS, "threads", "4", "200"]),
            ("host model (4 threads, forks)",
             [HOST, "model", os.path.join(tmp, "vg"), "4", "3", "1500", "5", "1"]),
            ("host spawn", [HOST, "spawn"]),
            ("host scm fork", [HOST, "scm", "fork"]),
            ("host sigstorm (1 s)", [HOST, "sigstorm", os.path.join(tmp, "vg-storm.json"), "1",
                                     "0"])]
    for name, args in runs:
        if not os.path.exists(args[0]):
            R.check(f"valgrind: {name}", False, f"{args[0]} missing")
            continue
        p = run(vg + args, env={"RSTSHIM_LOG": os.path.join(tmp, "vg.%p.jsonl")}, timeout=120)
        counts, first = valgrind_errors(p.stderr)
        in_shim = "librstshim.so" in first
        R.check(f"valgrind memcheck, LD_PRELOAD=librstshim.so: {name}: no errors "
                f"(error summaries {counts})",
                p.returncode == 0 and not p.timed_out and counts and not any(counts),
                (f"first error{' (in librstshim.so)' if in_shim else ''}:\n{first}"
                 if first else repr(p)))


VALGRIND_SCENARIOS = ["clean", "unread", "linger0", "dup", "fork", "epoll", "pending", "exit",
                      "dup2", "fclose", "close_range", "peer_reset"]


def test_valgrind_scenario_servers(tmp):
    """The scenario servers themselves (tests/scenario) under valgrind with the shim: the
    scenarios must still pass against the wire, and every server process report 0 errors."""
    if not shutil.which("valgrind"):
        R.skip("valgrind on the scenario servers", "valgrind is not installed")
        return
    if not IS_ROOT:
        R.skip("valgrind on the scenario servers", "the scenario suite needs root")
        return
    logs = os.path.join(tmp, "vg-scenarios")
    os.mkdir(logs)
    wrap = f"valgrind --error-exitcode=99 --leak-check=no --log-file={logs}/vg.%p.txt"
    p = run([sys.executable, os.path.join(ROOT, "tests", "scenario", "test_scenarios.py")]
            + VALGRIND_SCENARIOS, env={"RSTSHIM_SCENARIO_WRAP": wrap}, preload=False,
            timeout=300)
    out = p.stdout.decode(errors="replace")
    summaries = []
    for path in sorted(glob.glob(os.path.join(logs, "vg.*.txt"))):
        with open(path, "rb") as f:
            counts, first = valgrind_errors(f.read())
        summaries.append((os.path.basename(path), counts, first))
    bad = [x for x in summaries if not x[1] or any(x[1])]
    R.check(f"valgrind memcheck on {len(VALGRIND_SCENARIOS)} scenario servers under the shim: "
            f"the scenarios pass on the wire and {len(summaries)} server processes report 0 errors",
            p.returncode == 0 and f"{len(VALGRIND_SCENARIOS)} passed, 0 failed" in out
            and len(summaries) >= len(VALGRIND_SCENARIOS) and not bad,
            f"{out[-600:]} {bad[:1]}")


def fuzzer_toolchain():
    """(clang, why-not).  Installs libclang-rt-14-dev when root and missing."""
    clang = shutil.which("clang") or shutil.which("clang-14")
    if not clang:
        return None, "clang is not installed (apt-get install clang libclang-rt-14-dev)"

    def has_runtime():
        out = subprocess.run([clang, "-print-resource-dir"], capture_output=True, text=True)
        return bool(glob.glob(os.path.join(out.stdout.strip(), "lib", "linux",
                                           "libclang_rt.fuzzer-x86_64.a")))
    if not has_runtime() and IS_ROOT and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "libclang-rt-14-dev"],
                       capture_output=True, timeout=300)
    if not has_runtime():
        return None, "clang's libFuzzer runtime is missing (apt-get install libclang-rt-14-dev)"
    return clang, ""


def test_fuzz_config(tmp):
    clang, why = fuzzer_toolchain()
    if not clang:
        R.skip("libFuzzer on config_parse/config_expand_path", why)
        return
    srcs = [FUZZ_SRC, os.path.join(ROOT, "shim", "config.c"), os.path.join(ROOT, "shim", "format.c")]
    def stale():
        return not os.path.exists(FUZZ) or any(os.path.getmtime(s) > os.path.getmtime(FUZZ)
                                               for s in srcs)
    why = "up to date"
    if stale():
        os.makedirs(HDIR, exist_ok=True)
        b = subprocess.run([clang, "-g", "-O1", "-fsanitize=fuzzer,address,undefined",
                            "-fno-sanitize-recover=undefined", "-I", os.path.join(ROOT, "include"),
                            "-o", FUZZ] + srcs, capture_output=True, timeout=120)
        why = b.stderr.decode()[-800:] if b.returncode else "built"
    # counted whether it was rebuilt now or is still newer than its sources
    if not R.check("libFuzzer harness builds", not stale(), why):
        return
    corpus = os.path.join(HDIR, "fuzz-corpus")
    os.makedirs(corpus, exist_ok=True)
    seeds = [b"\x0f/var/log/rstshim/%p.jsonl\x00flagged\x00250\x00pod-7",
             b"\xff%%%p%\x00all\x003600000\x00" + b"t" * 127,
             b"\x8f\x00bogus\x00-1\x00" + b"x" * 200,
             b"\x35stdout\x00\x0099999999999999999999\x00",
             b"\x01stderr", b"\x0b/tmp/a\nb\x00\x00 12"]
    for n, s in enumerate(seeds):
        with open(os.path.join(corpus, f"seed{n}"), "wb") as f:
            f.write(s)
    budget = int(os.environ.get("RSTSHIM_FUZZ_SECONDS", "20"))
    art = os.path.join(tmp, "artifacts") + "/"
    os.makedirs(art)

    def fuzz(seconds, extra_env=None):
        return run([FUZZ, f"-max_total_time={seconds}", "-timeout=5", "-rss_limit_mb=1024",
                    "-print_final_stats=1", f"-artifact_prefix={art}", corpus],
                   env=extra_env or {}, preload=False, timeout=seconds + 60)

    p = fuzz(budget)
    crashes = sorted(glob.glob(art + "*"))
    detail = ""
    if crashes:
        text = p.stderr.decode(errors="replace")
        why_line = next((l for l in text.splitlines()
                         if "invariant failed" in l or "ERROR: AddressSanitizer" in l
                         or "runtime error" in l), "")
        with open(crashes[0], "rb") as f:
            detail = f"{why_line}\n  input {f.read()[:120]!r} ({os.path.basename(crashes[0])})"
    runs = re.search(r"number_of_executed_units:\s*(\d+)", p.stderr.decode(errors="replace"))
    R.check(f"libFuzzer on config_parse/config_expand_path for {budget} s "
            f"({runs.group(1) if runs else '?'} inputs): no crash, every invariant holds",
            p.returncode == 0 and not crashes and not p.timed_out, detail or repr(p))
    if crashes and (b"ret == -1" in p.stderr or b"heap-buffer-overflow" in p.stderr):
        # a zero-size output buffer: explore the rest of the input space past it
        for c in glob.glob(art + "*"):
            os.unlink(c)
        q = fuzz(max(5, budget // 3), {"FUZZ_CONFIG_MIN_OUT_SIZE": "1"})
        more = sorted(glob.glob(art + "*"))
        runs = re.search(r"number_of_executed_units:\s*(\d+)", q.stderr.decode(errors="replace"))
        R.check(f"libFuzzer, output buffers of at least 1 byte (past the failure above; "
                f"{runs.group(1) if runs else '?'} inputs): no crash, every invariant holds",
                q.returncode == 0 and not more,
                (open(more[0], "rb").read()[:120] if more else q))


def main():
    return run_tests(globals(), R, (SHIM, HOST, ASAN, TSAN, SHIM_CALLS), "test-sanitize",
                     "rstshim-sanitize-")


if __name__ == "__main__":
    sys.exit(main())
