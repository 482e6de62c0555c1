/* One place decides whether a wrapper may run the shim's own code.
 *
 * A wrapper runs shim code only when the library is initialised and the
 * calling thread is not already inside shim code.  The second rule keeps
 * the shim's own work (opening the log, reading /proc) from re-entering a
 * wrapper, and it makes a signal handler that interrupts shim code pass its
 * calls straight through.  The guard is held only around shim code, never
 * across the real call: a thread blocked in accept() or recv() must not
 * turn a signal handler's close() into a pass-through.
 *
 * A vfork child shares the parent's memory; it holds the guard for its
 * whole life (shim/vfork.S) so it never touches the parent's table. */
#ifndef RSTSHIM_GUARD_H
#define RSTSHIM_GUARD_H

#include <stdbool.h>

#define SHIM_HIDDEN __attribute__((visibility("hidden")))
#define SHIM_EXPORT __attribute__((visibility("default")))
#define SHIM_LIKELY(x) __builtin_expect(!!(x), 1)
#define SHIM_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* Slow paths kept out of a wrapper's fast path (see wrap_traffic.c). */
#define SHIM_NOINLINE __attribute__((noinline))
/* The wrappers every host calls on files and pipes (read, write, close, ...).
 * A fast path must not cross a 4 KiB page: this VM's kernel flushes the TLB
 * at every syscall (no PCID), and a read() that an unrelated change had moved
 * to 0xcfc0-0xd00d (one page boundary inside) read 0.945-0.976 on the
 * pipe-read row, against 0.978-0.992 within one page.  Aligned to 256 bytes, a
 * wrapper under 256 bytes (a lookup and a tail jump) never crosses one;
 * "hot" makes gcc put them in .text.hot, which the linker gathers, so the
 * fourteen share a page or two.  tests/build/check-library.sh checks each. */
#define SHIM_EXPORT_HOT SHIM_EXPORT __attribute__((hot, aligned(256)))

extern bool shim_ready;
extern __thread int shim_depth __attribute__((tls_model("initial-exec")));

/* True when shim code may run now; the caller must then call guard_leave(). */
static inline bool guard_enter(void)
{
    if (SHIM_UNLIKELY(!__atomic_load_n(&shim_ready, __ATOMIC_ACQUIRE)) || shim_depth)
        return false;
    shim_depth++;
    return true;
}

/* Re-enter after the real call, on a path that already passed guard_enter(). */
static inline void guard_reenter(void) { shim_depth++; }

static inline void guard_leave(void) { shim_depth--; }

/* For hot paths that only read the table: no state is changed. */
static inline bool guard_open(void)
{
    return SHIM_LIKELY(__atomic_load_n(&shim_ready, __ATOMIC_ACQUIRE)) && !shim_depth;
}

#endif
