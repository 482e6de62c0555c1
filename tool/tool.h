/* rstshim command: declarations shared by the subcommands.
 *
 * The command is deliberately independent of the preload library: it only
 * knows the library's file name and the JSON log schema, never its sources,
 * so either can be rebuilt or upgraded without the other. */
#ifndef RSTSHIM_TOOL_H
#define RSTSHIM_TOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#ifndef RSTSHIM_VERSION
#define RSTSHIM_VERSION "0.1.0"
#endif
/* Where `make install` puts the library; the command falls back to it when
 * no librstshim.so lies beside the executable. */
#ifndef RSTSHIM_LIBDIR
#define RSTSHIM_LIBDIR "/usr/local/lib/rstshim"
#endif
#define RSTSHIM_LIBNAME "librstshim.so"

/* Exit codes shared by the subcommands (run passes the child's through). */
enum {
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_CANNOT_EXEC = 126, /* CMD found but not executable (as sh) */
    EXIT_NOT_FOUND = 127,   /* CMD not found / library not found */
};

int cmd_run(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_explain(int argc, char **argv);

/* ELF inspection (elfcheck.c): what makes LD_PRELOAD ineffective. */
enum elf_kind {
    ELF_DYNAMIC,     /* has PT_INTERP: the dynamic loader will honour LD_PRELOAD */
    ELF_STATIC,      /* no PT_INTERP: no loader runs, the shim cannot load */
    ELF_SCRIPT,      /* "#!" script: the interpreter is what matters */
    ELF_NOT_ELF,     /* something else (exec will decide) */
    ELF_UNREADABLE,  /* could not open/read it */
};
enum elf_kind elf_classify(const char *path, char *interp, size_t interp_len);

/* Resolve CMD like execvp does (PATH search when it has no '/').
 * Returns false when nothing executable was found. */
bool resolve_command(const char *cmd, char *out, size_t out_len);

/* Summary/report engine (report*.c), also used by `run` for its summary.
 * report_new(workers, progress): workers = parsing threads, 0 = as many as
 * CPUs (up to 4), 1 = parse in the calling thread. */
struct report;
struct report *report_new(int workers, bool progress);
void report_free(struct report *r);
/* Feed one file from byte offset `start` (0 = whole file); name "-" = stdin.
 * Returns 0, or -1 when it could not be opened/read (already reported). */
int report_feed_path(struct report *r, const char *path, long long start);
/* Wait for the parsing threads and gather their totals: call once, after
 * the last feed and before printing. */
void report_finish(struct report *r);
void report_print_text(const struct report *r, FILE *out, int top);
int report_print_json(const struct report *r, FILE *out, int top);
void report_print_summary(const struct report *r, FILE *out, const char *logname);

/* Small helpers (util.c). */
double mono_seconds(void);
bool parse_nonneg_int(const char *s, long *out);
void warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
